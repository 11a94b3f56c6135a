"""The simulator's CDN: emoji images in Discord's URL shapes, so emoji handling runs offline.

Custom emoji are served at ``/emojis/{id}.png`` and ``/emojis/{id}.gif`` (with Discord's optional
``?size=``), unicode emoji at ``/emojis/unicode/{codepoints}.png`` with twemoji's file names.
Every image is drawn from its emoji id or codepoints alone: the same request gives byte-identical
bytes in every process and run, and different emoji give different images.
"""

from __future__ import annotations

import asyncio
import functools
import io
import math
import random
import re

from aiohttp import web
from PIL import Image, ImageDraw

from simulator.responses import error_response
from simulator.world import Emoji, World, guild_of

DEFAULT_SIZE = 128  # what Discord's CDN returns for a custom emoji without ?size=
UNICODE_SIZE = 72  # twemoji's PNGs are 72x72
MIN_SIZE = 16
MAX_SIZE = 4096
CONTENT_TYPES = {"png": "image/png", "gif": "image/gif"}
UNKNOWN_EMOJI = 10014  # Discord's JSON error code
GENERAL_ERROR = 0  # Discord's code for a malformed request

ANIMATION_FRAMES = 8
FRAME_MS = 80
# An emoji id's image never changes (Discord only lets an emoji be renamed), so clients may keep
# it for as long as they like.
CACHE_CONTROL = "public, max-age=31536000"
# A 4096px gif takes about half a second to encode; larger renders go to a thread so they do not
# stall every other connection on the loop, smaller ones are cheaper than the thread hop.
INLINE_RENDER_MAX_SIZE = 256

_SNOWFLAKE = re.compile(r"[0-9]{1,20}")  # the digit cap keeps int() cheap on hostile input
_CODEPOINT = re.compile(r"[0-9a-fA-F]{1,6}")
_SIZE = re.compile(r"[0-9]{1,4}")
_ZWJ = "\u200d"
_VARIATION_SELECTOR_16 = "\ufe0f"


def custom_emoji_image(
    world: World, emoji_id: int, image_format: str, size: int = DEFAULT_SIZE
) -> bytes:
    """The image of a custom emoji of ``world`` as Discord's CDN serves it.

    ``image_format`` is "png" (an animated emoji's first frame) or "gif" (every frame of an
    animated emoji, one frame of a static one). ``size`` is a power of two from 16 to 4096.
    Raises KeyError for an emoji the world does not have, ValueError for a bad format or size.
    """
    _check_format(image_format)
    _check_size(size)
    emoji = _find_emoji(world, emoji_id)
    return _render_custom(emoji.id, emoji.animated, image_format, size)


def unicode_emoji_image(codepoints: str, size: int = UNICODE_SIZE) -> bytes:
    """The PNG of a unicode emoji named by twemoji-style hex codepoints, e.g. "1f600".

    Case and leading zeros do not matter ("1F600" and "01f600" are the same image). Raises
    ValueError when a part is not a Unicode scalar value in hex, when no codepoint is an emoji
    one (U+2000 and up, or the © and ® that have emoji forms), or when ``size`` is outside
    16..4096.
    """
    canonical = "-".join(f"{value:x}" for value in _parse_codepoints(codepoints))
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    return _render_unicode(canonical, size)


def unicode_codepoints(text: str) -> str:
    """Twemoji's file name for an emoji string: "😀" gives "1f600", "❤️" gives "2764".

    Like twemoji, U+FE0F is dropped unless the sequence has a zero-width joiner: twemoji names
    ZWJ sequences with their FE0F ("🏳️‍🌈" is "1f3f3-fe0f-200d-1f308").
    """
    if not text:
        raise ValueError("an emoji string is needed, got an empty one")
    if _ZWJ not in text:
        text = text.replace(_VARIATION_SELECTOR_16, "")
    return "-".join(f"{ord(char):x}" for char in text)


def add_cdn_routes(app: web.Application, world: World) -> None:
    """Serve ``world``'s custom emoji and any unicode emoji at Discord's and twemoji's paths."""

    async def custom_emoji(request: web.Request) -> web.Response:
        try:
            emoji_id, image_format = _parse_emoji_file_name(request.match_info["file_name"])
            size = _parse_size(request.query.get("size"))
            emoji = _find_emoji(world, emoji_id)
        except ValueError as exc:
            return error_response(400, str(exc), GENERAL_ERROR)
        except KeyError:
            return error_response(404, "Unknown Emoji", UNKNOWN_EMOJI)
        render = functools.partial(_render_custom, emoji.id, emoji.animated, image_format, size)
        body = render() if size <= INLINE_RENDER_MAX_SIZE else await asyncio.to_thread(render)
        return _image(body, image_format)

    async def unicode_emoji(request: web.Request) -> web.Response:
        file_name = request.match_info["file_name"]
        codepoints, dot, extension = file_name.rpartition(".")
        if not dot or extension != "png":
            message = f"unicode emoji are served as {{codepoints}}.png, got {file_name!r}"
            return error_response(400, message, GENERAL_ERROR)
        try:
            body = unicode_emoji_image(codepoints)
        except ValueError as exc:
            return error_response(400, str(exc), GENERAL_ERROR)
        return _image(body, "png")

    # A path variable never matches "/", so /emojis/unicode/... cannot reach custom_emoji. Both
    # take the whole file name and parse it themselves: a malformed one gets a 400 JSON body
    # rather than the router's plain-text 404.
    app.router.add_get("/emojis/unicode/{file_name}", unicode_emoji)
    app.router.add_get("/emojis/{file_name}", custom_emoji)


def _find_emoji(world: World, emoji_id: int) -> Emoji:
    guild_id = guild_of(emoji_id)
    if world.has_guild(guild_id):
        for emoji in world.guild(guild_id).emojis:
            if emoji.id == emoji_id:
                return emoji
    raise KeyError(f"no emoji {emoji_id} in this world")


def _check_format(image_format: str) -> None:
    if image_format not in CONTENT_TYPES:
        raise ValueError(f"emoji are served as png or gif, not {image_format!r}")


def _check_size(size: int) -> None:
    if not (MIN_SIZE <= size <= MAX_SIZE and size & (size - 1) == 0):
        raise ValueError(f"size must be a power of two from {MIN_SIZE} to {MAX_SIZE}, got {size}")


def _parse_emoji_file_name(file_name: str) -> tuple[int, str]:
    stem, dot, image_format = file_name.rpartition(".")
    if not dot:
        raise ValueError(f"expected {{emoji_id}}.png or {{emoji_id}}.gif, got {file_name!r}")
    if not _SNOWFLAKE.fullmatch(stem):
        raise ValueError(f"an emoji id is a snowflake (an integer), got {stem!r}")
    _check_format(image_format)
    return int(stem), image_format


def _parse_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_SIZE
    if not _SIZE.fullmatch(raw):
        raise ValueError(f"size must be a power of two from {MIN_SIZE} to {MAX_SIZE}, got {raw!r}")
    size = int(raw)
    _check_size(size)
    return size


def _parse_codepoints(codepoints: str) -> list[int]:
    values = []
    for part in codepoints.split("-"):
        if not _CODEPOINT.fullmatch(part):
            raise ValueError(
                f"{part!r} in {codepoints!r} is not a hex codepoint; "
                "expected hex codepoints joined by '-', like 1f600 or 1f468-200d-1f469"
            )
        value = int(part, 16)
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            raise ValueError(f"{part!r} in {codepoints!r} is not a Unicode scalar value")
        values.append(value)
    if not any(value >= 0x2000 or value in (0xA9, 0xAE) for value in values):
        raise ValueError(
            f"{codepoints!r} names no emoji: every codepoint is below U+2000, like plain letters"
        )
    return values


@functools.lru_cache(maxsize=128)
def _render_custom(emoji_id: int, animated: bool, image_format: str, size: int) -> bytes:
    rng = random.Random(emoji_id)
    if image_format == "png":
        return _png(_frames(rng, size, 1)[0])
    return _gif(_frames(rng, size, ANIMATION_FRAMES if animated else 1))


@functools.lru_cache(maxsize=128)
def _render_unicode(canonical_codepoints: str, size: int) -> bytes:
    # A str seed goes through SHA-512, so the image does not depend on PYTHONHASHSEED.
    return _png(_frames(random.Random(canonical_codepoints), size, 1)[0])


def _frames(rng: random.Random, size: int, count: int) -> list[Image.Image]:
    """``count`` frames of a body with a spot circling its centre; colours and shape from rng."""
    # Palette index 0 is the transparent background; 1, 2 and 3 are the body, spot and centre.
    palette = [0, 0, 0, *(rng.randrange(256) for _ in range(9))]
    shape = rng.choice(("circle", "rounded square", "hexagon"))
    phase = rng.random() * math.tau
    centre, margin, spot, core, orbit = size / 2, size / 16, size / 8, size / 16, size * 0.28
    body = (margin, margin, size - 1 - margin, size - 1 - margin)
    frames = []
    for index in range(count):
        frame = Image.new("P", (size, size), 0)
        frame.putpalette(palette)
        draw = ImageDraw.Draw(frame)
        if shape == "circle":
            draw.ellipse(body, fill=1)
        elif shape == "rounded square":
            draw.rounded_rectangle(body, radius=size / 6, fill=1)
        else:
            draw.regular_polygon((centre, centre, centre - margin), 6, fill=1)
        angle = phase + math.tau * index / count
        x, y = centre + orbit * math.cos(angle), centre + orbit * math.sin(angle)
        draw.ellipse((x - spot, y - spot, x + spot, y + spot), fill=2)
        draw.ellipse((centre - core, centre - core, centre + core, centre + core), fill=3)
        frames.append(frame)
    return frames


def _png(frame: Image.Image) -> bytes:
    # RGBA like Discord's emoji PNGs, with the background index turned transparent.
    frame.info["transparency"] = 0
    buffer = io.BytesIO()
    frame.convert("RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _gif(frames: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    # optimize=False keeps the drawn palette as it is rather than letting Pillow remap it.
    frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=FRAME_MS,
        loop=0,
        disposal=2,
        transparency=0,
        optimize=False,
    )
    return buffer.getvalue()


def _image(body: bytes, image_format: str) -> web.Response:
    return web.Response(
        body=body,
        content_type=CONTENT_TYPES[image_format],
        headers={"Cache-Control": CACHE_CONTROL},
    )
