"""Framing: messages to length-prefixed frames and back.

A frame is an 8-byte header -- body length N and the CRC-32 of the body, both unsigned 32-bit
big-endian -- followed by N bytes of msgpack holding one catalogue message. The length comes
first so a reader can refuse an oversized frame from its header alone, before buffering a byte
of the body. The checksum makes a corrupted or foreign byte stream fail loudly instead of
decoding into a message nobody sent (a flipped bit inside an int is still valid msgpack).
"""

from __future__ import annotations

import struct
import sys
import typing
import zlib
from collections.abc import Iterable, Iterator

import msgspec

from protocol.errors import (
    ChecksumMismatch,
    FrameTooLarge,
    InvalidField,
    MalformedFrame,
    MissingField,
    ProtocolError,
    TruncatedFrame,
    UnknownMessageKind,
)
from protocol.messages import CATALOGUE, AnyMessage, Message

# A frame as received: header and body, viewing the immutable bytes it arrived in.
Frame = bytes | memoryview

HEADER = struct.Struct(">II")
HEADER_SIZE = HEADER.size
DEFAULT_FRAME_CAP = 16 * 1024 * 1024
# Bodies shorter than this are sliced out of what was read, and sent joined to their header.
COPY_BELOW = 4096

_crc32 = zlib.crc32


class FrameEncoder:
    """Encodes messages into frames; a batch of frames comes out as one buffer (one write)."""

    def __init__(self, frame_cap: int = DEFAULT_FRAME_CAP) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._frame_cap = frame_cap
        self._join_below = min(COPY_BELOW, frame_cap + 1)  # bodies joined to their header

    def encode(self, message: Message) -> bytes:
        body = self._encoder.encode(message)
        return self._header(body) + body

    def encode_into(self, message: Message, parts: list[Frame]) -> None:
        """Append the frame to ``parts`` for a gathered write: a small one as one buffer, a
        large one as header and body, the body uncopied."""
        body = self._encoder.encode(message)
        if len(body) < self._join_below:
            parts.append(HEADER.pack(len(body), _crc32(body)) + body)
        else:
            parts.append(self._header(body))
            parts.append(body)

    def encode_batch(self, messages: Iterable[Message]) -> bytes:
        parts: list[Frame] = []
        for message in messages:
            self.encode_into(message, parts)
        return b"".join(parts)

    def _header(self, body: bytes) -> bytes:
        """An oversized message is refused here, at its sender, before anything is written."""
        if len(body) > self._frame_cap:
            raise FrameTooLarge(len(body), self._frame_cap)
        return HEADER.pack(len(body), _crc32(body))


class FrameDecoder:
    """Incremental decoder: feed it chunks split anywhere, get back whole messages.

    After the first error the decoder is poisoned and raises that error again: a stream that
    carried one bad frame cannot be re-synchronised, so its connection must be closed.
    """

    def __init__(self, frame_cap: int = DEFAULT_FRAME_CAP) -> None:
        self._decoder: msgspec.msgpack.Decoder[AnyMessage] = msgspec.msgpack.Decoder(AnyMessage)
        self._frame_cap = frame_cap
        # The start of an incomplete frame, and how many bytes it needs before parsing is worth it.
        self._buffer = bytearray()
        self._needed = 0
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer)

    def feed(
        self, data: bytes | bytearray | memoryview, frames: list[Frame] | None = None
    ) -> Iterator[AnyMessage]:
        """Yield every message completed by ``data``, in order.

        Messages that precede a bad frame are yielded first and the error is raised after
        them, so nothing that arrived intact is lost. With ``frames``, each message's whole
        frame is appended to it, for forwarding without re-encoding; pass immutable ``bytes``
        then, as the frames view the data.
        """
        if self._error is not None:
            raise self._error
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._needed:
                return
            data = bytes(self._buffer)
            self._buffer.clear()
        messages, position, error = self._parse(data, frames)
        if error is None and position < len(data):
            self._buffer += memoryview(data)[position:]
            self._needed = _frame_size(self._buffer)
        yield from messages
        if error is not None:
            self._error = error
            raise error

    def _parse(
        self, data: bytes | bytearray | memoryview, frames: list[Frame] | None
    ) -> tuple[list[AnyMessage], int, ProtocolError | None]:
        """Decode the whole frames at the start of ``data``: messages, bytes used, first error.

        Small frames are sliced out as copies: a few dozen bytes copy faster than a view is
        made. Large ones are viewed, so a big body is never copied.
        """
        messages: list[AnyMessage] = []
        append = messages.append
        position = 0
        size = len(data)
        view = memoryview(data)
        # Small frames are sliced from this: as copies where the data is bytes.
        whole: bytes | memoryview = data if isinstance(data, bytes) else view
        unpack, cap, decode = HEADER.unpack_from, self._frame_cap, self._decoder.decode
        try:
            while size - position >= HEADER_SIZE:
                length, checksum = unpack(data, position)
                if length > cap:
                    raise FrameTooLarge(length, cap)
                start = position + HEADER_SIZE
                end = start + length
                if end > size:
                    break
                source = whole if length < COPY_BELOW else view
                body = source[start:end]
                if _crc32(body) != checksum:
                    raise ChecksumMismatch(length, checksum, _crc32(body))
                try:
                    append(decode(body))
                except msgspec.MsgspecError as error:
                    raise _explain_undecodable(body, error) from None
                except RecursionError:
                    raise too_deep(len(body)) from None
                if frames is not None:
                    frames.append(source[position:end])
                position = end
        except ProtocolError as error:
            return messages, position, error
        return messages, position, None

    def close(self) -> None:
        """The stream ended: an incomplete frame left in the buffer is an error."""
        if self._error is not None or not self._buffer:
            return
        self._error = TruncatedFrame(len(self._buffer), self._needed)
        self._buffer.clear()
        raise self._error


def too_deep(size: int) -> MalformedFrame:
    """A body nested deeper than the decoder goes (the interpreter's recursion limit)."""
    limit = sys.getrecursionlimit()
    return MalformedFrame(f"{size} bytes nested deeper than {limit} levels, the decoder's limit")


def _frame_size(partial: bytearray) -> int:
    """The whole size of the frame that ``partial`` begins (its cap was checked by the parser)."""
    if len(partial) < HEADER_SIZE:
        return HEADER_SIZE
    length: int = HEADER.unpack_from(partial, 0)[0]
    return HEADER_SIZE + length


def _explain_undecodable(body: bytes | memoryview, error: msgspec.MsgspecError) -> ProtocolError:
    """Turn msgspec's error into one that names the problem, the kind and the field."""
    if not isinstance(error, msgspec.ValidationError):
        return MalformedFrame(f"frame of {len(body)} bytes is not msgpack: {error}")
    raw = msgspec.msgpack.decode(body)
    if not isinstance(raw, dict):
        return MalformedFrame(
            f"frame body is a msgpack {type(raw).__name__}, expected a map with a 'kind' field"
        )
    kind = raw.get("kind")
    if kind is None:
        return MalformedFrame("frame body has no 'kind' field")
    if kind not in CATALOGUE:
        return UnknownMessageKind(kind)
    detail = str(error)
    if detail.startswith("Object missing required field"):
        return MissingField(typing.cast(str, kind), detail)
    return InvalidField(typing.cast(str, kind), detail)
