"""The emoji task: parsing every kind of emoji, fetching from the simulator's CDN and from
misbehaving servers, and composition checked by decoding what it produced."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable

import emoji
import pytest
from aiohttp import web
from PIL import Image, ImageDraw

from simulator.cdn import (
    ANIMATION_FRAMES,
    DEFAULT_SIZE,
    FRAME_MS,
    custom_emoji_image,
    unicode_codepoints,
    unicode_emoji_image,
)
from simulator.server import Simulator
from simulator.world import Emoji, World
from tests.simulation import running_simulator
from tests.virtual_time import virtual_clock
from worker import emoji_compose
from worker.emoji_compose import MAX_OUTPUT_PIXELS, compose
from worker.emoji_fetch import EmojiFetcher, EmojiSources, emoji_url, fetch_emoji_images
from worker.emoji_text import EmojiError, EmojiRef, parse_emoji, twemoji_name

STATIC_ID = 123456789012345678
ANIMATED_ID = 223456789012345678
HEIGHT = 128
GAP = 8  # 1/16 of HEIGHT


def custom(name: str, emoji_id: int, animated: bool = False) -> EmojiRef:
    return EmojiRef(name, emoji_id, animated, codepoints="")


def bare(emoji_id: int) -> EmojiRef:
    return EmojiRef(str(emoji_id), emoji_id, animated=False, codepoints="")


def uni(text: str, codepoints: str) -> EmojiRef:
    return EmojiRef(text, None, animated=False, codepoints=codepoints)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"<:blob:{STATIC_ID}>", [custom("blob", STATIC_ID)]),
        (f"<a:party_1:{ANIMATED_ID}>", [custom("party_1", ANIMATED_ID, animated=True)]),
        (f"{STATIC_ID}", [bare(STATIC_ID)]),
        ("12345678901234567", [bare(12345678901234567)]),  # 17 digits: the shortest id
        (
            f"look {ANIMATED_ID}, no: {STATIC_ID} <a:x:{ANIMATED_ID}>and 😀!",
            [bare(STATIC_ID), custom("x", ANIMATED_ID, animated=True), uni("😀", "1f600")],
        ),
        (
            f"😀<:blob:{STATIC_ID}>👍🏽 {ANIMATED_ID}\n❤️",
            [
                uni("😀", "1f600"),
                custom("blob", STATIC_ID),
                uni("👍🏽", "1f44d-1f3fd"),
                bare(ANIMATED_ID),
                uni("❤️", "2764"),
            ],
        ),
        ("🇺🇸", [uni("🇺🇸", "1f1fa-1f1f8")]),
        ("🇺🇸🇬🇧", [uni("🇺🇸", "1f1fa-1f1f8"), uni("🇬🇧", "1f1ec-1f1e7")]),
        ("1️⃣", [uni("1️⃣", "31-20e3")]),
        ("#️⃣", [uni("#️⃣", "23-20e3")]),
        ("👍🏽", [uni("👍🏽", "1f44d-1f3fd")]),
        ("👨‍👩‍👧", [uni("👨‍👩‍👧", "1f468-200d-1f469-200d-1f467")]),
        ("👩🏽‍💻", [uni("👩🏽‍💻", "1f469-1f3fd-200d-1f4bb")]),
        ("❤️", [uni("❤️", "2764")]),
        ("❤", [uni("❤", "2764")]),
        ("🏳️‍🌈", [uni("🏳️‍🌈", "1f3f3-fe0f-200d-1f308")]),  # ZWJ: twemoji keeps FE0F
        ("🏴󠁧󠁢󠁳󠁣󠁴󠁿", [uni("🏴󠁧󠁢󠁳󠁣󠁴󠁿", "1f3f4-e0067-e0062-e0073-e0063-e0074-e007f")]),
        # Not a ZWJ sequence anyone registered: its parts, each with a twemoji image.
        ("👍\u200d👍", [uni("👍", "1f44d"), uni("👍", "1f44d")]),
    ],
)
def test_parse_finds_every_kind_of_emoji_in_order(text: str, expected: list[EmojiRef]) -> None:
    assert parse_emoji(text, limit=10) == expected


@pytest.mark.parametrize(
    ("text", "limit", "message"),
    [
        ("", 5, "no emoji found in the text"),
        ("just words, a # and 1 and *", 5, "no emoji found in the text"),
        ("1234567890123456 is too short for an id", 5, "no emoji found in the text"),
        ("123456789012345678901 is too long", 5, "no emoji found in the text"),
        (f"x{STATIC_ID} {STATIC_ID}y", 5, "no emoji found in the text"),  # not standalone
        (f"<@{STATIC_ID}> <#{STATIC_ID}> <@&{STATIC_ID}>", 5, "no emoji found in the text"),
        ("😀😀😀", 2, "found 3 emoji; the limit is 2"),
        (f"<:a:{STATIC_ID}> 🇺🇸 👨‍👩‍👧 {ANIMATED_ID}", 3, "found 4 emoji; the limit is 3"),
    ],
)
def test_parse_refuses_no_emoji_and_too_many(text: str, limit: int, message: str) -> None:
    with pytest.raises(EmojiError) as caught:
        parse_emoji(text, limit)
    assert str(caught.value) == message


def test_codepoints_agree_with_the_simulators_cdn_for_every_emoji() -> None:
    # Every emoji the package knows, qualified or not: the simulator serves what twemoji names.
    for text in emoji.EMOJI_DATA:
        assert twemoji_name(text) == unicode_codepoints(text), text
    fully_qualified = [
        text
        for text, data in emoji.EMOJI_DATA.items()
        if data["status"] == emoji.STATUS["fully_qualified"]
    ]
    # One whole sequence each, not its parts.
    for text in fully_qualified:
        assert [ref.name for ref in parse_emoji(f"a {text} b", limit=1)] == [text]


SOURCES = EmojiSources("https://cdn.example/emojis/", "https://twemoji.example/72x72/")


@pytest.mark.parametrize(
    ("ref", "url"),
    [
        (custom("blob", STATIC_ID), f"https://cdn.example/emojis/{STATIC_ID}.png"),
        (custom("p", ANIMATED_ID, True), f"https://cdn.example/emojis/{ANIMATED_ID}.gif"),
        (bare(STATIC_ID), f"https://cdn.example/emojis/{STATIC_ID}.gif"),
        (uni("🇺🇸", "1f1fa-1f1f8"), "https://twemoji.example/72x72/1f1fa-1f1f8.png"),
    ],
)
def test_urls(ref: EmojiRef, url: str) -> None:
    assert emoji_url(ref, SOURCES) == url


# -- fetching --------------------------------------------------------------------------------


def simulator_sources(sim: Simulator) -> EmojiSources:
    return EmojiSources(f"{sim.cdn_url}/emojis/", f"{sim.cdn_url}/emojis/unicode/")


def world_emojis(sim: Simulator) -> tuple[Emoji, Emoji]:
    # The world makes emoji n of a guild animated when n is odd.
    static, animated = sim.world.guild(sim.world.guild_ids[0]).emojis[:2]
    assert not static.animated and animated.animated
    return static, animated


@contextlib.asynccontextmanager
async def fetcher_for(
    sources: EmojiSources, cache_bytes: int = 1 << 20
) -> AsyncIterator[EmojiFetcher]:
    fetcher = EmojiFetcher(sources, cache_bytes)
    try:
        yield fetcher
    finally:
        await fetcher.close()


async def test_fetches_every_kind_from_the_simulator_and_composes_them() -> None:
    async with running_simulator(guilds=2) as sim, fetcher_for(simulator_sources(sim)) as fetcher:
        static, animated = world_emojis(sim)
        text = (
            f"<:{static.name}:{static.id}> 👨‍👩‍👧 <a:{animated.name}:{animated.id}> {animated.id}"
        )
        refs, images = await fetch_emoji_images(text, fetcher, limit=4)
        world = sim.world
        labels = [str(static.id), "👨‍👩‍👧", str(animated.id), str(animated.id)]
        assert [ref.label for ref in refs] == labels
        assert images == [
            custom_emoji_image(world, static.id, "png"),
            unicode_emoji_image("1f468-200d-1f469-200d-1f467"),
            custom_emoji_image(world, animated.id, "gif"),
            custom_emoji_image(world, animated.id, "gif"),  # a bare id comes as a GIF
        ]
        assert (fetcher.misses, fetcher.hits) == (3, 1)  # the same URL twice: one request

    jumbo = compose(images, height=HEIGHT)
    width = 4 * HEIGHT + 3 * GAP  # every input is square; the 72 px twemoji is enlarged
    assert (jumbo.content_type, jumbo.width, jumbo.height) == ("image/gif", width, HEIGHT)
    image = decode(jumbo.data)
    assert (image.format, image.size, getattr(image, "n_frames", 1)) == (
        "GIF",
        (width, HEIGHT),
        ANIMATION_FRAMES,
    )
    assert jumbo.frames == ANIMATION_FRAMES


async def test_a_static_emoji_by_bare_id_is_a_one_frame_gif_and_gives_a_png() -> None:
    async with running_simulator(guilds=1) as sim, fetcher_for(simulator_sources(sim)) as fetcher:
        static, _ = world_emojis(sim)
        _, images = await fetch_emoji_images(str(static.id), fetcher, limit=1)
    assert decode(images[0]).format == "GIF"
    jumbo = compose(images, height=HEIGHT)
    assert (jumbo.content_type, jumbo.frames) == ("image/png", 1)
    assert decode(jumbo.data).format == "PNG"


async def test_an_unknown_emoji_is_a_404_naming_it() -> None:
    async with running_simulator(guilds=1) as sim, fetcher_for(simulator_sources(sim)) as fetcher:
        static, _ = world_emojis(sim)
        missing = static.id + 200  # the guild's, but the world has only its first two emoji
        with pytest.raises(EmojiError) as caught:
            await fetcher.fetch(custom("gone", missing))
        assert str(caught.value) == f"emoji {missing} not found on the CDN (HTTP 404)"
        # fetch_all names the first failing emoji in text order, whichever fails first.
        refs = [custom("ok", static.id), custom("gone", missing), custom("gone", missing + 1)]
        with pytest.raises(EmojiError, match=f"emoji {missing} not found"):
            await fetcher.fetch_all(refs)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def serving(handler: Handler, release: asyncio.Event) -> AsyncIterator[EmojiSources]:
    """A CDN on 127.0.0.1 answering every path with ``handler``; ``release`` is set before it
    stops so that a handler waiting on it ends and the server need not wait for it."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        base = f"http://{host}:{port}"
        yield EmojiSources(f"{base}/emojis/", f"{base}/unicode/")
    finally:
        release.set()
        await runner.cleanup()


@pytest.mark.virtual_time  # the fetch's timeout is a loop timer: it fires without the wait
async def test_a_slow_cdn_times_out_quickly() -> None:
    clock = virtual_clock()
    release = asyncio.Event()

    async def never_answers(request: web.Request) -> web.StreamResponse:
        await release.wait()
        return web.Response(status=204)

    async with serving(never_answers, release) as sources:
        slow = EmojiSources(sources.custom_base, sources.unicode_base, timeout=0.2)
        async with fetcher_for(slow) as fetcher:
            started = clock()
            with pytest.raises(EmojiError) as caught:
                await fetcher.fetch(custom("slow", STATIC_ID))
            assert clock() - started < 2.0
    assert str(caught.value) == f"fetching emoji {STATIC_ID} timed out after 0.2 s"


async def test_images_over_the_size_cap_are_refused_declared_or_streamed() -> None:
    release = asyncio.Event()
    body = bytes(3000)

    async def large(request: web.Request) -> web.StreamResponse:
        if request.path.endswith(".png"):
            return web.Response(body=body, content_type="image/png")  # with Content-Length
        response = web.StreamResponse()
        response.enable_chunked_encoding()  # no Content-Length: only counting catches it
        await response.prepare(request)
        for _ in range(100):
            await response.write(body)
        await response.write_eof()
        return response

    async with serving(large, release) as sources:
        capped = EmojiSources(sources.custom_base, sources.unicode_base, max_bytes=1000)
        async with fetcher_for(capped) as fetcher:
            with pytest.raises(EmojiError) as declared:
                await fetcher.fetch(custom("big", STATIC_ID))
            with pytest.raises(EmojiError) as streamed:
                await fetcher.fetch(bare(STATIC_ID))
    assert (
        str(declared.value) == f"the image of emoji {STATIC_ID} is 2.9 KiB; the limit is 1000 bytes"
    )
    assert str(streamed.value) == (
        f"the image of emoji {STATIC_ID} is larger than the limit of 1000 bytes"
    )


@pytest.mark.virtual_time  # the CDN is slow in virtual seconds
async def test_cache_hits_shared_requests_and_eviction_by_bytes() -> None:
    release = asyncio.Event()
    requests: list[str] = []

    async def counted(request: web.Request) -> web.StreamResponse:
        requests.append(request.path)
        await asyncio.sleep(0.05)  # virtual: concurrent fetches overlap, at no cost
        return web.Response(body=request.path.encode().ljust(600), content_type="image/png")

    async with serving(counted, release) as sources, fetcher_for(sources, 1000) as fetcher:
        first, second = custom("a", STATIC_ID), custom("b", ANIMATED_ID)
        bodies = await asyncio.gather(*(fetcher.fetch(first) for _ in range(5)))
        assert len(set(bodies)) == 1 and len(requests) == 1
        assert (fetcher.misses, fetcher.hits) == (1, 4)
        assert await fetcher.fetch(first) == bodies[0]
        assert (fetcher.misses, fetcher.hits, len(requests)) == (1, 5, 1)
        await fetcher.fetch(second)  # 600 + 600 bytes do not fit in 1000: the first goes
        await fetcher.fetch(first)
        assert (fetcher.misses, fetcher.hits, len(requests)) == (3, 5, 3)


async def test_other_statuses_and_unreachable_cdns_are_errors() -> None:
    release = asyncio.Event()

    async def unavailable(request: web.Request) -> web.StreamResponse:
        return web.Response(status=503)

    async with serving(unavailable, release) as sources, fetcher_for(sources) as fetcher:
        with pytest.raises(EmojiError) as caught:
            await fetcher.fetch(uni("😀", "1f600"))
    assert str(caught.value) == "the CDN answered HTTP 503 for emoji 😀"
    # The server is gone now: nothing listens on its port.
    async with fetcher_for(sources) as fetcher:
        with pytest.raises(EmojiError) as refused:
            await fetcher.fetch(uni("😀", "1f600"))
    assert str(refused.value) == "could not fetch emoji 😀: the CDN did not answer"


# -- composition -----------------------------------------------------------------------------


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def frames_of(data: bytes) -> list[tuple[Image.Image, int]]:
    """Every frame of an image as RGBA, with its duration."""
    image = decode(data)
    frames = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        frames.append((image.convert("RGBA"), int(image.info.get("duration", 0))))
    return frames


def rgba(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    pixel = image.getpixel(xy)
    assert isinstance(pixel, tuple)
    return pixel


def square(size: int, colour: tuple[int, int, int], image_format: str = "PNG") -> bytes:
    """A disc of ``colour`` on a transparent square."""
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse((0, 0, size - 1, size - 1), fill=(*colour, 255))
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def animation(size: tuple[int, int], durations: list[int]) -> bytes:
    """A GIF whose frame n is filled with grey level 40 * (n + 1), on a transparent border."""
    frames = []
    for index in range(len(durations)):
        frame = Image.new("P", size, 0)
        frame.putpalette([0, 0, 0] + [40 * (n + 1) for n in range(len(durations)) for _ in "rgb"])
        ImageDraw.Draw(frame).rectangle((2, 2, size[0] - 3, size[1] - 3), fill=index + 1)
        frames.append(frame)
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        transparency=0,
        disposal=2,
    )
    return buffer.getvalue()


def world_image(animated: bool) -> bytes:
    """A custom emoji's image as the simulator draws it: 128 px, 8 frames if animated."""
    world = World(seed=3, guild_count=1, emojis_per_guild=2)
    found = world.guild(world.guild_ids[0]).emojis[int(animated)]
    return custom_emoji_image(world, found.id, "gif" if animated else "png")


def test_still_emoji_give_a_png_of_the_expected_size() -> None:
    wide = Image.new("RGBA", (64, 32), (0, 200, 0, 255))
    buffer = io.BytesIO()
    wide.save(buffer, format="PNG")
    images = [square(72, (255, 0, 0)), square(128, (0, 0, 255), "GIF"), buffer.getvalue()]

    jumbo = compose(images, height=HEIGHT)

    width = HEIGHT + GAP + HEIGHT + GAP + 2 * HEIGHT  # the 2:1 input keeps its aspect ratio
    assert (jumbo.content_type, jumbo.width, jumbo.height, jumbo.frames) == (
        "image/png",
        width,
        HEIGHT,
        1,
    )
    image = decode(jumbo.data)
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (width, HEIGHT))
    pixel = image.getpixel
    assert pixel((64, 64)) == (255, 0, 0, 255)  # the 72 px disc, enlarged to fill 128
    assert pixel((HEIGHT + GAP // 2, 64)) == (0, 0, 0, 0)  # the gap
    assert pixel((HEIGHT + GAP + 64, 64)) == (0, 0, 255, 255)
    assert pixel((0, 0)) == (0, 0, 0, 0)  # a disc's corner stays transparent
    assert pixel((width - 1, HEIGHT - 1)) == (0, 200, 0, 255)


def test_still_and_animated_give_a_gif_with_every_frame_and_transparency() -> None:
    jumbo = compose([world_image(animated=False), world_image(animated=True)], height=HEIGHT)

    width = 2 * DEFAULT_SIZE + GAP
    assert (jumbo.content_type, jumbo.width, jumbo.height) == ("image/gif", width, HEIGHT)
    assert jumbo.frames == ANIMATION_FRAMES
    image = decode(jumbo.data)
    assert (image.format, image.size, image.info["loop"]) == ("GIF", (width, HEIGHT), 0)
    frames = frames_of(jumbo.data)
    assert [duration for _, duration in frames] == [FRAME_MS] * ANIMATION_FRAMES
    still = [frame.crop((0, 0, HEIGHT, HEIGHT)).tobytes() for frame, _ in frames]
    moving = [frame.crop((HEIGHT + GAP, 0, width, HEIGHT)).tobytes() for frame, _ in frames]
    assert len(set(still)) == 1  # the still emoji is the same in every frame
    assert len(set(moving)) == ANIMATION_FRAMES  # the animated one moves in every frame
    for frame, _ in frames:  # corners and gap transparent in every frame (disposal 2)
        for xy in [(0, 0), (HEIGHT + GAP // 2, 64), (width - 1, HEIGHT - 1)]:
            assert rgba(frame, xy)[3] == 0


def test_animations_of_different_lengths_share_one_timeline() -> None:
    # A: frames at 0 and 100 ms, loop 200. B: frames at 0, 50 and 100 ms, loop 150, so within
    # A's loop B also starts at 150. Output frames begin wherever either begins.
    a = animation((32, 32), [100, 100])
    b = animation((32, 32), [50, 50, 50])

    jumbo = compose([a, b], height=32)

    frames = frames_of(jumbo.data)
    assert [duration for _, duration in frames] == [50, 50, 50, 50]
    assert jumbo.frames == 4 and (jumbo.width, jumbo.height) == (32 + 2 + 32, 32)
    grey = [(rgba(frame, (16, 16))[0], rgba(frame, (34 + 16, 16))[0]) for frame, _ in frames]
    assert grey == [(40, 40), (40, 80), (80, 120), (80, 40)]  # B wrapped round at 150 ms

    capped = compose([a, b], height=32, max_frames=3)
    assert [duration for _, duration in frames_of(capped.data)] == [50, 50, 50]
    assert capped.frames == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "emoji 2 is not an image"),
        (b"<html>not found</html>", "emoji 2 is not an image"),
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "emoji 2 is not an image"),
        (square(64, (1, 2, 3))[:120], "emoji 2 is not an image"),  # truncated mid-pixels
        (square(8, (1, 2, 3), "BMP"), "emoji 2 is not an image"),  # a format no CDN serves
    ],
)
def test_hostile_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(EmojiError) as caught:
        compose([square(16, (9, 9, 9)), data])
    assert str(caught.value) == message


def test_nothing_to_compose_is_refused() -> None:
    with pytest.raises(EmojiError, match="there are no emoji to enlarge"):
        compose([])


def test_huge_images_are_refused_before_they_are_decoded() -> None:
    # 5000x5000 of one colour is a few kB of PNG and 100 MB of pixels.
    buffer = io.BytesIO()
    Image.new("L", (5000, 5000)).save(buffer, format="PNG")
    with pytest.raises(EmojiError) as caught:
        compose([buffer.getvalue()])
    assert str(caught.value) == "emoji 1 is 5000x5000 pixels, too large to enlarge"

    buffer = io.BytesIO()
    Image.new("L", (4000, 100)).save(buffer, format="PNG")
    with pytest.raises(EmojiError) as wide:
        compose([buffer.getvalue()], height=128)
    assert str(wide.value) == "the enlarged emoji would be 5120 pixels wide; the limit is 4096"


def test_the_decoded_pixel_budget_covers_every_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emoji_compose, "MAX_DECODED_PIXELS", 3 * DEFAULT_SIZE * DEFAULT_SIZE)
    with pytest.raises(EmojiError) as caught:
        compose([world_image(animated=True)])
    assert str(caught.value) == "the emoji images are too large to enlarge together"


def test_a_sandbox_refusal_is_not_disguised_as_a_bad_image(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*args: object, **kwargs: object) -> Image.Image:
        raise PermissionError("a compute task may not use open")

    monkeypatch.setattr(Image, "open", refused)
    with pytest.raises(PermissionError):
        compose([square(16, (9, 9, 9))])


def test_a_wide_animation_gets_fewer_frames_within_the_output_budget() -> None:
    # 100 frames that scale to 4,096 x 128: 52 M pixels to compose and encode, 3 s of CPU.
    frames = [Image.new("RGBA", (1024, 32), (n * 2, 255 - n, n, 255)) for n in range(100)]
    buffer = io.BytesIO()
    durations = [20 + n for n in range(100)]
    frames[0].save(
        buffer, "GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0
    )
    image = compose([buffer.getvalue()], HEIGHT)
    assert (image.width, image.height) == (4096, HEIGHT)
    assert 1 < image.frames <= MAX_OUTPUT_PIXELS // (4096 * HEIGHT)
    assert len(frames_of(image.data)) == image.frames
