"""The emoji task for ``!jumbo``: find emoji in a message, fetch their images, enlarge them.

Three steps, split where the process boundary is. ``parse_emoji`` finds custom emoji
(``<:name:id>``, ``<a:name:id>``, standalone ids) and unicode emoji in order; the unicode data
and sequence matching (flags, keycaps, skin tones, ZWJ sequences) are the ``emoji`` package's,
kept current with Unicode releases rather than written here. ``EmojiFetcher`` fetches the images
from Discord's CDN and a twemoji-style CDN (the simulator serves both) with a timeout, a size
cap, a byte-bounded LRU cache and one request per URL however many ask at once.
``compose`` is the CPU work, done with Pillow and without network (it runs in the compute
sandbox): decode with size checks before any pixel is decoded, scale to one height, place
side by side; PNG when everything is still, GIF with every input's frames on one timeline when
anything moves.

Every ``EmojiError`` message is a sentence meant for the Discord user who asked.
"""

from __future__ import annotations

import asyncio
import bisect
import io
import itertools
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import emoji
from PIL import Image

# Standalone: whitespace or the text's ends on both sides, so a mention (<@id>), a channel
# (<#id>) or a role (<@&id>) is not taken for an emoji id. The markup's id is not checked for
# length: a malformed one is answered by the CDN's 404, a clearer error than "no emoji found".
_CUSTOM = re.compile(
    r"<(?P<animated>a?):(?P<name>[A-Za-z0-9_]{1,32}):(?P<id>[0-9]{1,20})>"
    r"|(?<!\S)(?P<bare>[0-9]{17,20})(?!\S)"
)
_ZWJ = "\u200d"
_VARIATION_SELECTOR_16 = "\ufe0f"

FORMATS = ("PNG", "GIF", "WEBP", "JPEG")  # what the CDNs serve; no other decoder is reachable
MAX_PIXELS = 4096 * 4096  # of one input frame, checked against the declared size
MAX_DECODED_PIXELS = 64 * 1024 * 1024  # over every frame of every input of one compose
MAX_WIDTH = 4096  # of the result: a very wide input scaled to the height could be huge
# Of the result, over all its frames: what bounds composing and GIF encoding. Measured: 100
# frames of 4096 x 128 (52 M pixels) took 3.1 s of CPU and 365 MiB peak; held to 16 M pixels,
# 1.2 s and 160 MiB; to 12 M, about 1 s. A wide animation gets fewer frames, not a refusal.
MAX_OUTPUT_PIXELS = 12 * 1024 * 1024
GAP_RATIO = 16  # the transparent gap between emoji is 1/16 of the height
DEFAULT_FRAME_MS = 100  # browsers (and Discord) show a frame shorter than 20 ms for 100 ms
MIN_FRAME_MS = 20
GIF_TICK_MS = 10  # GIF stores durations in hundredths of a second
TRANSPARENT = 255  # the palette index of transparent pixels in GIF frames
OPAQUE_ALPHA = 128  # GIF has no partial transparency: at least half opaque is opaque


class EmojiError(ValueError):
    """Why a jumbo was refused, as a sentence for the Discord user who asked."""


@dataclass(frozen=True, slots=True)
class EmojiRef:
    """One emoji found in a text."""

    name: str  # custom: its name (a bare id: the id as text); unicode: the emoji itself
    emoji_id: int | None  # None for unicode emoji
    animated: bool  # <a:...>; a bare id is fetched as a GIF, which keeps any animation
    codepoints: str  # unicode: twemoji's file name, like "1f1fa-1f1f8"; custom: ""

    @property
    def label(self) -> str:
        """How error messages name it: the custom emoji's id, or the unicode emoji itself."""
        return self.name if self.emoji_id is None else str(self.emoji_id)


def parse_emoji(text: str, limit: int) -> list[EmojiRef]:
    """The emoji of ``text`` in order of appearance; other text is ignored.

    Raises EmojiError when there is none, or more than ``limit``.
    """
    refs: list[EmojiRef] = []
    position = 0
    for match in _CUSTOM.finditer(text):
        refs.extend(_unicode_emoji(text[position : match.start()]))
        refs.append(_custom_emoji(match))
        position = match.end()
    refs.extend(_unicode_emoji(text[position:]))
    if not refs:
        raise EmojiError("no emoji found in the text")
    if len(refs) > limit:
        raise EmojiError(f"found {len(refs)} emoji; the limit is {limit}")
    return refs


def twemoji_name(text: str) -> str:
    """Twemoji's file name for an emoji string: hex codepoints joined by "-".

    Twemoji drops U+FE0F unless the sequence has a zero-width joiner ("❤️" is "2764", but
    "🏳️‍🌈" is "1f3f3-fe0f-200d-1f308").
    """
    if _ZWJ not in text:
        text = text.replace(_VARIATION_SELECTOR_16, "")
    return "-".join(f"{ord(char):x}" for char in text)


def _custom_emoji(match: re.Match[str]) -> EmojiRef:
    if match["bare"] is not None:
        return EmojiRef(match["bare"], int(match["bare"]), animated=False, codepoints="")
    return EmojiRef(match["name"], int(match["id"]), bool(match["animated"]), codepoints="")


def _unicode_emoji(text: str) -> list[EmojiRef]:
    return [
        EmojiRef(found["emoji"], None, animated=False, codepoints=twemoji_name(found["emoji"]))
        for found in emoji.emoji_list(text)
    ]


@dataclass(frozen=True, slots=True)
class EmojiSources:
    """Where emoji images come from, and how long and how large a fetch may be."""

    custom_base: str  # e.g. "https://cdn.discordapp.com/emojis/"
    unicode_base: str  # e.g. "https://cdn.jsdelivr.net/gh/jdecked/twemoji@15.1.0/assets/72x72/"
    timeout: float = 5.0  # per fetch, seconds
    max_bytes: int = 2 * 1024 * 1024  # per image


def emoji_url(ref: EmojiRef, sources: EmojiSources) -> str:
    """The image URL of an emoji.

    A bare id does not say whether the emoji is animated, so it is fetched as a GIF: Discord
    serves a static emoji's GIF as one frame and an animated one's with all its frames.
    """
    if ref.emoji_id is None:
        return f"{sources.unicode_base}{ref.codepoints}.png"
    extension = "gif" if ref.animated or ref.name == str(ref.emoji_id) else "png"
    return f"{sources.custom_base}{ref.emoji_id}.{extension}"


class EmojiFetcher:
    """Fetches emoji images over one lazily made HTTP session, with a cache of their bytes.

    ``hits`` counts fetches answered without a new request (from the cache, or by joining a
    request already in flight for the same URL); ``misses`` counts requests sent.
    """

    def __init__(self, sources: EmojiSources, cache_bytes: int = 32 * 1024 * 1024) -> None:
        self.sources = sources
        self.cache_bytes = cache_bytes
        self.hits = 0
        self.misses = 0
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._cached_bytes = 0
        self._in_flight: dict[str, asyncio.Task[bytes]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, ref: EmojiRef) -> bytes:
        """The image bytes of ``ref``; raises EmojiError naming the emoji and the reason."""
        url = emoji_url(ref, self.sources)
        body = self._cache.get(url)
        if body is not None:
            self._cache.move_to_end(url)
            self.hits += 1
            return body
        task = self._in_flight.get(url)
        if task is None:
            self.misses += 1
            task = asyncio.get_running_loop().create_task(self._download(ref, url))
            self._in_flight[url] = task
            task.add_done_callback(lambda _: self._in_flight.pop(url, None))
        else:
            self.hits += 1
        # Shielded: one caller giving up must not cancel the request the others wait for.
        return await asyncio.shield(task)

    async def fetch_all(self, refs: Sequence[EmojiRef]) -> list[bytes]:
        """The images of ``refs``, fetched concurrently, in order.

        Every fetch is waited for (each is bounded by the timeout), so that the error raised is
        always the first failing emoji's in text order.
        """
        results = await asyncio.gather(*(self.fetch(ref) for ref in refs), return_exceptions=True)
        images: list[bytes] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            images.append(result)
        return images

    async def close(self) -> None:
        for task in list(self._in_flight.values()):
            task.cancel()
        await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _download(self, ref: EmojiRef, url: str) -> bytes:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=self.sources.timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        try:
            async with self._session.get(url) as response:
                body = await self._read_body(ref, response)
        except TimeoutError:
            message = f"fetching emoji {ref.label} timed out after {self.sources.timeout} s"
            raise EmojiError(message) from None
        except aiohttp.ClientError as exc:
            raise EmojiError(f"could not fetch emoji {ref.label}: the CDN did not answer") from exc
        self._remember(url, body)
        return body

    async def _read_body(self, ref: EmojiRef, response: aiohttp.ClientResponse) -> bytes:
        if response.status == 404:
            raise EmojiError(f"emoji {ref.label} not found on the CDN (HTTP 404)")
        if response.status != 200:
            raise EmojiError(f"the CDN answered HTTP {response.status} for emoji {ref.label}")
        limit = self.sources.max_bytes
        declared = response.content_length
        if declared is not None and declared > limit:
            raise EmojiError(
                f"the image of emoji {ref.label} is {_size(declared)}; the limit is {_size(limit)}"
            )
        # Counted as well: a body may be chunked, compressed, or longer than it declared.
        body = bytearray()
        while len(body) <= limit:
            chunk = await response.content.read(limit + 1 - len(body))
            if not chunk:
                return bytes(body)
            body += chunk
        raise EmojiError(
            f"the image of emoji {ref.label} is larger than the limit of {_size(limit)}"
        )

    def _remember(self, url: str, body: bytes) -> None:
        if len(body) > self.cache_bytes:
            return
        self._cache[url] = body
        self._cached_bytes += len(body)
        while self._cached_bytes > self.cache_bytes:
            _, evicted = self._cache.popitem(last=False)
            self._cached_bytes -= len(evicted)


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB".replace(".0 ", " ")
    return f"{count / (1024 * 1024):.1f} MiB".replace(".0 ", " ")


async def fetch_emoji_images(
    text: str, fetcher: EmojiFetcher, limit: int
) -> tuple[list[EmojiRef], list[bytes]]:
    """The emoji of ``text`` and their images: the network half of a jumbo.

    ``compose`` is the other half; the caller runs it where there is no network.
    """
    refs = parse_emoji(text, limit)
    return refs, await fetcher.fetch_all(refs)


@dataclass(frozen=True, slots=True)
class JumboImage:
    data: bytes
    content_type: str  # "image/png" or "image/gif"
    width: int
    height: int
    frames: int


@dataclass(slots=True)
class _PixelBudget:
    """How many more pixels one compose may decode: bounds its CPU time and memory."""

    remaining: int

    def spend(self, pixels: int) -> None:
        self.remaining -= pixels
        if self.remaining < 0:
            raise EmojiError("the emoji images are too large to enlarge together")


@dataclass(slots=True)
class _Input:
    frames: list[Image.Image]  # RGBA, scaled
    starts: list[int]  # ms from the start of its loop at which each frame begins
    loop_ms: int


def compose(images: Sequence[bytes], height: int = 128, max_frames: int = 100) -> JumboImage:
    """``images`` scaled to ``height`` and placed side by side with a small transparent gap.

    A PNG when every input is one frame. Otherwise a GIF that loops with the longest input:
    an output frame begins wherever any input's frame begins (at most ``max_frames`` of
    them) and shows every input's frame current at that time. Errors name an input by its
    1-based position ("emoji 2 is not an image").
    """
    if not images:
        raise EmojiError("there are no emoji to enlarge")
    opened: list[Image.Image] = []
    try:
        for number, data in enumerate(images, start=1):
            opened.append(_open(number, data))
        boxes = [_scaled_size(image.size, height) for image in opened]
        gap = max(1, round(height / GAP_RATIO))
        width = sum(box[0] for box in boxes) + gap * (len(boxes) - 1)
        if width > MAX_WIDTH:
            raise EmojiError(
                f"the enlarged emoji would be {width} pixels wide; the limit is {MAX_WIDTH}"
            )
        max_frames = max(1, min(max_frames, MAX_OUTPUT_PIXELS // (width * height)))
        budget = _PixelBudget(MAX_DECODED_PIXELS)
        inputs = [
            _decode(number, image, box, max_frames, budget)
            for number, (image, box) in enumerate(zip(opened, boxes, strict=True), start=1)
        ]
    finally:
        for image in opened:
            image.close()
    offsets = [sum(box[0] + gap for box in boxes[:index]) for index in range(len(boxes))]
    if all(len(item.frames) == 1 for item in inputs):
        canvas = _canvas((width, height), [item.frames[0] for item in inputs], offsets)
        buffer = io.BytesIO()
        canvas.save(buffer, format="PNG")
        return JumboImage(buffer.getvalue(), "image/png", width, height, frames=1)
    return _animation(inputs, offsets, (width, height), max_frames)


def _open(number: int, data: bytes) -> Image.Image:
    # Decoders raise many kinds of exception on hostile bytes; any of them means "not an image",
    # except the compute sandbox's refusals and its memory limit, which are not the image's.
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
    except (PermissionError, MemoryError):
        raise
    except Image.DecompressionBombError as exc:
        raise EmojiError(f"emoji {number} is too large an image to enlarge") from exc
    except Exception as exc:
        raise EmojiError(f"emoji {number} is not an image") from exc
    _check_pixels(number, image.size)
    return image


def _check_pixels(number: int, size: tuple[int, int]) -> None:
    if size[0] * size[1] > MAX_PIXELS:
        raise EmojiError(f"emoji {number} is {size[0]}x{size[1]} pixels, too large to enlarge")


def _scaled_size(size: tuple[int, int], height: int) -> tuple[int, int]:
    width, original_height = size
    return max(1, round(width * height / max(1, original_height))), height


def _decode(
    number: int, image: Image.Image, box: tuple[int, int], max_frames: int, budget: _PixelBudget
) -> _Input:
    """At most ``max_frames`` frames of ``image``, scaled to ``box``; ``budget`` is spent before
    each frame is decoded."""
    size = image.size
    frames: list[Image.Image] = []
    starts: list[int] = []
    elapsed = 0
    try:
        while len(frames) < max_frames:
            # A GIF frame may grow the canvas past its declared size: the check is per frame.
            if image.size != size:
                raise EmojiError(f"emoji {number} changes size between its frames")
            budget.spend(size[0] * size[1])
            frame = image.convert("RGBA")
            frames.append(
                frame if frame.size == box else frame.resize(box, Image.Resampling.LANCZOS)
            )
            starts.append(elapsed)
            elapsed += _frame_ms(image.info.get("duration"))
            try:
                image.seek(image.tell() + 1)
            except EOFError:
                break
    except (EmojiError, PermissionError, MemoryError):
        raise
    except Exception as exc:
        raise EmojiError(f"emoji {number} is not an image") from exc
    return _Input(frames, starts, elapsed)


def _frame_ms(duration: object) -> int:
    if not isinstance(duration, int | float) or duration < MIN_FRAME_MS:
        return DEFAULT_FRAME_MS
    return round(duration / GIF_TICK_MS) * GIF_TICK_MS


def _canvas(
    size: tuple[int, int], frames: Sequence[Image.Image], offsets: Sequence[int]
) -> Image.Image:
    canvas = Image.new("RGBA", size, (0, 0, 0, 0))
    for frame, offset in zip(frames, offsets, strict=True):
        canvas.paste(frame, (offset, 0))
    return canvas


def _animation(
    inputs: Sequence[_Input], offsets: Sequence[int], size: tuple[int, int], max_frames: int
) -> JumboImage:
    times, end = _timeline(inputs, max_frames)
    durations = [after - before for before, after in zip(times, [*times[1:], end], strict=True)]
    frames: list[Image.Image] = []
    for time in times:
        current = [
            item.frames[bisect.bisect_right(item.starts, time % item.loop_ms) - 1]
            for item in inputs
        ]
        frames.append(_gif_frame(_canvas(size, current, offsets)))
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        disposal=2,  # each frame is drawn on a cleared canvas: transparency shows through
        transparency=TRANSPARENT,
    )
    data = buffer.getvalue()
    # The encoder merges identical consecutive frames (adding their durations), so the frame
    # count is read back from what it wrote; this parses block headers, it decodes no pixels.
    with Image.open(io.BytesIO(data)) as written:
        count = getattr(written, "n_frames", 1)
    return JumboImage(data, "image/gif", size[0], size[1], frames=count)


def _timeline(inputs: Sequence[_Input], max_frames: int) -> tuple[list[int], int]:
    """The start times of the output frames, and the time the last one ends."""
    animated = [item for item in inputs if len(item.frames) > 1]
    loop_ms = max(item.loop_ms for item in animated)
    starts: set[int] = set()
    for item in animated:
        # A shorter input repeats within the longest loop. No input has more than max_frames + 1
        # of the union's first max_frames + 1 times, so its later ones need not be made.
        repeating = (
            repeat * item.loop_ms + start for repeat in itertools.count() for start in item.starts
        )
        within_loop = itertools.takewhile(lambda time: time < loop_ms, repeating)
        starts.update(itertools.islice(within_loop, max_frames + 1))
    times = sorted(starts)
    if len(times) > max_frames:
        return times[:max_frames], times[max_frames]
    return times, loop_ms


def _gif_frame(canvas: Image.Image) -> Image.Image:
    """``canvas`` in 255 colours plus one transparent index, set from its alpha channel."""
    transparent = canvas.getchannel("A").point(lambda alpha: 255 if alpha < OPAQUE_ALPHA else 0)
    frame = canvas.convert("RGB").quantize(colors=TRANSPARENT)
    frame.paste(TRANSPARENT, mask=transparent)
    frame.info["transparency"] = TRANSPARENT
    return frame
