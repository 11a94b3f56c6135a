"""Enlarging emoji for ``!jumbo``: the CPU half, with Pillow and without network.

It runs in the compute sandbox: decode with size checks before any pixel is decoded, scale to
one height, place side by side; PNG when everything is still, GIF with every input's frames on
one timeline when anything moves. Its limits are on pixels, since pixels are what cost CPU time
and memory here; the fetch (``emoji_fetch``) bounds bytes instead.
"""

from __future__ import annotations

import bisect
import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from worker.emoji_text import EmojiError

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
