"""The simulator's CDN: deterministic emoji images; Discord's paths and errors over real HTTP."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web
from PIL import GifImagePlugin, Image, PngImagePlugin

from simulator.cdn import (
    ANIMATION_FRAMES,
    DEFAULT_SIZE,
    UNICODE_SIZE,
    add_cdn_routes,
    custom_emoji_image,
    unicode_codepoints,
    unicode_emoji_image,
)
from simulator.world import EMOJI_BASE, World

REPO = Path(__file__).resolve().parent.parent


def make_world() -> World:
    # The world gives emoji n of a guild animated=(n odd): two per guild, one of each.
    return World(seed=5, guild_count=4, emojis_per_guild=2)


def static_and_animated(world: World) -> tuple[int, int]:
    static, animated = world.guild(world.guild_ids[0]).emojis
    assert not static.animated and animated.animated
    return static.id, animated.id


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def decode_gif(data: bytes) -> GifImagePlugin.GifImageFile:
    image = decode(data)
    assert isinstance(image, GifImagePlugin.GifImageFile)
    return image


def test_the_same_emoji_gives_identical_bytes_and_different_emoji_different_bytes() -> None:
    world, other = make_world(), make_world()
    emoji_ids = [emoji.id for guild in world.guild_ids for emoji in world.guild(guild).emojis]
    for image_format in ("png", "gif"):
        images = [custom_emoji_image(world, emoji_id, image_format) for emoji_id in emoji_ids]
        assert images == [
            custom_emoji_image(other, emoji_id, image_format) for emoji_id in emoji_ids
        ]
        assert len(set(images)) == len(emoji_ids)
    assert unicode_emoji_image("1f600") == unicode_emoji_image("1f600")
    assert len({unicode_emoji_image(name) for name in ("1f600", "1f601", "2764", "1f44d")}) == 4


def test_images_are_identical_in_another_process_with_another_hash_seed() -> None:
    """Byte-identical across processes, and so not an artefact of the in-process cache."""
    script = textwrap.dedent(
        """
        import hashlib
        from simulator.cdn import custom_emoji_image, unicode_emoji_image
        from tests.test_simulator_cdn import make_world, static_and_animated
        world = make_world()
        for emoji_id in static_and_animated(world):
            for image_format in ("png", "gif"):
                image = custom_emoji_image(world, emoji_id, image_format)
                print(hashlib.sha256(image).hexdigest())
        print(hashlib.sha256(unicode_emoji_image("1f468-200d-1f469-200d-1f467")).hexdigest())
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    world = make_world()
    expected = [
        hashlib.sha256(custom_emoji_image(world, emoji_id, image_format)).hexdigest()
        for emoji_id in static_and_animated(world)
        for image_format in ("png", "gif")
    ]
    expected.append(hashlib.sha256(unicode_emoji_image("1f468-200d-1f469-200d-1f467")).hexdigest())
    assert child.stdout.split() == expected


@pytest.mark.parametrize("size", [16, DEFAULT_SIZE, 512])
def test_pngs_decode_to_the_requested_size_with_a_transparent_background(size: int) -> None:
    world = make_world()
    for emoji_id in static_and_animated(world):
        image = decode(custom_emoji_image(world, emoji_id, "png", size))
        assert isinstance(image, PngImagePlugin.PngImageFile)
        assert (image.mode, image.size, image.n_frames) == ("RGBA", (size, size), 1)
        assert image.getpixel((0, 0)) == (0, 0, 0, 0)
        assert image.getchannel("A").getpixel((size // 2, size // 2)) == 255


def test_the_default_size_is_128() -> None:
    world = make_world()
    for emoji_id in static_and_animated(world):
        for image_format in ("png", "gif"):
            assert decode(custom_emoji_image(world, emoji_id, image_format)).size == (128, 128)


@pytest.mark.parametrize("size", [16, DEFAULT_SIZE])
def test_an_animated_emoji_gif_has_every_frame_and_each_frame_differs(size: int) -> None:
    world = make_world()
    _, animated = static_and_animated(world)
    image = decode_gif(custom_emoji_image(world, animated, "gif", size))
    assert image.size == (size, size)
    assert image.is_animated
    assert image.n_frames == ANIMATION_FRAMES > 1
    frames = []
    for index in range(image.n_frames):
        image.seek(index)
        frames.append(image.convert("RGBA").tobytes())
    assert len(set(frames)) == ANIMATION_FRAMES


def test_a_static_emoji_gif_has_one_frame() -> None:
    world = make_world()
    static, _ = static_and_animated(world)
    image = decode_gif(custom_emoji_image(world, static, "gif"))
    assert image.size == (DEFAULT_SIZE, DEFAULT_SIZE)
    assert image.n_frames == 1
    assert not image.is_animated


def test_an_emoji_the_world_does_not_have_is_a_key_error() -> None:
    world = make_world()
    first, last = world.guild_ids[0], world.guild_ids[-1]
    unknown = [
        first | (EMOJI_BASE + 2),  # past the guild's emoji count
        first | 0x100,  # a channel id
        first,  # the guild id itself
        (last + (1 << 22)) | EMOJI_BASE,  # in a guild that does not exist yet
        -1,
        0,
    ]
    removed = world.guild(last).emojis[0].id
    world.remove_guild(last)
    for emoji_id in [*unknown, removed]:
        with pytest.raises(KeyError):
            custom_emoji_image(world, emoji_id, "png")


@pytest.mark.parametrize(
    ("image_format", "size"), [("jpg", 128), ("webp", 128), ("PNG", 128), ("png", 100), ("gif", 8)]
)
def test_a_bad_format_or_size_is_a_value_error(image_format: str, size: int) -> None:
    world = make_world()
    static, _ = static_and_animated(world)
    with pytest.raises(ValueError, match=r"png or gif|power of two"):
        custom_emoji_image(world, static, image_format, size)


@pytest.mark.parametrize(
    ("text", "codepoints"),
    [
        ("😀", "1f600"),
        ("❤️", "2764"),  # FE0F dropped
        ("👍🏽", "1f44d-1f3fd"),
        ("👨‍👩‍👧", "1f468-200d-1f469-200d-1f467"),
        ("🏳️‍🌈", "1f3f3-fe0f-200d-1f308"),  # twemoji keeps FE0F in ZWJ sequences
        ("1️⃣", "31-20e3"),
    ],
)
def test_unicode_codepoints_gives_twemoji_file_names(text: str, codepoints: str) -> None:
    assert unicode_codepoints(text) == codepoints
    unicode_emoji_image(codepoints)


def test_unicode_codepoints_of_an_empty_string_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        unicode_codepoints("")


def test_a_unicode_emoji_png_has_its_size_and_ignores_case_and_leading_zeros() -> None:
    image = decode(unicode_emoji_image("1f600"))
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (UNICODE_SIZE, UNICODE_SIZE))
    assert decode(unicode_emoji_image("1f600", size=256)).size == (256, 256)
    assert (
        unicode_emoji_image("1F600")
        == unicode_emoji_image("01f600")
        == unicode_emoji_image("1f600")
    )


@pytest.mark.parametrize(
    ("codepoints", "message"),
    [
        ("41", "names no emoji"),
        ("31-32", "names no emoji"),
        ("zz", "not a hex codepoint"),
        ("0x1f600", "not a hex codepoint"),
        ("+1f600", "not a hex codepoint"),
        (" 1f600", "not a hex codepoint"),
        ("1f600-", "not a hex codepoint"),
        ("1f600--2764", "not a hex codepoint"),
        ("", "not a hex codepoint"),
        ("1234567", "not a hex codepoint"),
        ("110000", "not a Unicode scalar value"),
        ("d800", "not a Unicode scalar value"),
    ],
)
def test_bad_codepoints_are_a_value_error(codepoints: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unicode_emoji_image(codepoints)


def test_a_unicode_size_outside_the_cdn_range_is_a_value_error() -> None:
    for size in (8, 8192):
        with pytest.raises(ValueError, match="size"):
            unicode_emoji_image("1f600", size)


@dataclass(frozen=True)
class Fetched:
    status: int
    content_type: str
    cache_control: str | None
    body: bytes

    def json(self) -> object:
        assert self.content_type == "application/json"
        return msgspec.json.decode(self.body)


Fetch = Callable[[str], Awaitable[Fetched]]


@pytest.fixture
def world() -> World:
    return make_world()


@pytest.fixture
async def fetch(world: World) -> AsyncIterator[Fetch]:
    """GETs paths from a real CDN server on a port the OS picks; both are closed afterwards."""
    app = web.Application()
    add_cdn_routes(app, world)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession(f"http://{host}:{port}") as session:

            async def get(path: str) -> Fetched:
                async with session.get(path) as response:
                    return Fetched(
                        status=response.status,
                        content_type=response.headers["Content-Type"],
                        cache_control=response.headers.get("Cache-Control"),
                        body=await response.read(),
                    )

            yield get
    finally:
        await runner.cleanup()


async def test_custom_emoji_are_served_as_png_and_gif(world: World, fetch: Fetch) -> None:
    for emoji_id in static_and_animated(world):
        for image_format in ("png", "gif"):
            fetched = await fetch(f"/emojis/{emoji_id}.{image_format}")
            assert fetched.status == 200
            assert fetched.content_type == f"image/{image_format}"
            assert fetched.cache_control is not None
            assert fetched.cache_control.startswith("public, max-age=")
            assert fetched.body == custom_emoji_image(world, emoji_id, image_format)


@pytest.mark.parametrize("size", [16, 1024])  # 1024 is rendered off the loop
async def test_the_size_query_sets_the_image_size(world: World, fetch: Fetch, size: int) -> None:
    _, animated = static_and_animated(world)
    for image_format in ("png", "gif"):
        fetched = await fetch(f"/emojis/{animated}.{image_format}?size={size}")
        assert fetched.status == 200
        assert decode(fetched.body).size == (size, size)


async def test_an_unknown_emoji_is_a_404_unknown_emoji(world: World, fetch: Fetch) -> None:
    last = world.guild_ids[-1]
    removed = world.guild(last).emojis[0].id
    assert (await fetch(f"/emojis/{removed}.png")).status == 200
    world.remove_guild(last)
    for path in (f"/emojis/{removed}.png", f"/emojis/{removed}.gif", "/emojis/1.png"):
        fetched = await fetch(path)
        assert fetched.status == 404
        assert fetched.json() == {"message": "Unknown Emoji", "code": 10014}


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("{id}.jpg", "png or gif"),
        ("{id}.PNG", "png or gif"),
        ("{id}", "expected {emoji_id}.png"),
        ("abc.png", "snowflake"),
        ("-1.png", "snowflake"),
        ("1.5.png", "snowflake"),
        ("123456789012345678901.png", "snowflake"),
        ("{id}.png?size=100", "power of two"),
        ("{id}.png?size=8", "power of two"),
        ("{id}.png?size=8192", "power of two"),
        ("{id}.png?size=abc", "power of two"),
        ("{id}.png?size=", "power of two"),
        ("{id}.gif?size=-16", "power of two"),
    ],
)
async def test_a_malformed_custom_emoji_request_is_a_400_that_says_why(
    world: World, fetch: Fetch, name: str, message: str
) -> None:
    static, _ = static_and_animated(world)
    fetched = await fetch("/emojis/" + name.replace("{id}", str(static)))
    assert fetched.status == 400
    body = fetched.json()
    assert isinstance(body, dict)
    assert message in body["message"]


async def test_unicode_emoji_are_served_as_png(fetch: Fetch) -> None:
    codepoints = unicode_codepoints("👨‍👩‍👧")
    fetched = await fetch(f"/emojis/unicode/{codepoints}.png")
    assert (fetched.status, fetched.content_type) == (200, "image/png")
    assert fetched.body == unicode_emoji_image(codepoints)
    assert decode(fetched.body).size == (UNICODE_SIZE, UNICODE_SIZE)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("41.png", "names no emoji"),
        ("zz.png", "not a hex codepoint"),
        ("110000.png", "not a Unicode scalar value"),
        ("1f600.gif", "{codepoints}.png"),
        ("1f600", "{codepoints}.png"),
    ],
)
async def test_malformed_unicode_codepoints_are_a_400_that_says_why(
    fetch: Fetch, name: str, message: str
) -> None:
    fetched = await fetch(f"/emojis/unicode/{name}")
    assert fetched.status == 400
    body = fetched.json()
    assert isinstance(body, dict)
    assert message in body["message"]
