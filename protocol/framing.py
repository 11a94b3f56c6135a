"""Framing: messages to length-prefixed frames and back.

A frame is an 8-byte header -- body length N and the CRC-32 of the body, both unsigned 32-bit
big-endian -- followed by N bytes of msgpack holding one catalogue message. The length comes
first so a reader can refuse an oversized frame from its header alone, before buffering a byte
of the body. The checksum makes a corrupted or foreign byte stream fail loudly instead of
decoding into a message nobody sent (a flipped bit inside an int is still valid msgpack).
"""

from __future__ import annotations

import struct
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

HEADER = struct.Struct(">II")
HEADER_SIZE = HEADER.size
DEFAULT_FRAME_CAP = 16 * 1024 * 1024

_crc32 = zlib.crc32


class FrameEncoder:
    """Encodes messages into frames; many messages can share one buffer (one write)."""

    def __init__(self, frame_cap: int = DEFAULT_FRAME_CAP) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._frame_cap = frame_cap

    def encode(self, message: Message) -> bytearray:
        buffer = bytearray()
        self.encode_into(message, buffer)
        return buffer

    def encode_batch(self, messages: Iterable[Message]) -> bytearray:
        buffer = bytearray()
        for message in messages:
            self.encode_into(message, buffer)
        return buffer

    def encode_into(self, message: Message, buffer: bytearray) -> None:
        """Append one frame to ``buffer``. An oversized message is refused here, at its sender."""
        start = len(buffer)
        body_start = start + HEADER_SIZE
        self._encoder.encode_into(message, buffer, body_start)
        length = len(buffer) - body_start
        if length > self._frame_cap:
            del buffer[start:]
            raise FrameTooLarge(length, self._frame_cap)
        with memoryview(buffer) as view:
            checksum = _crc32(view[body_start:])
        HEADER.pack_into(buffer, start, length, checksum)


class FrameDecoder:
    """Incremental decoder: feed it chunks split anywhere, get back whole messages.

    After the first error the decoder is poisoned and raises that error again: a stream that
    carried one bad frame cannot be re-synchronised, so its connection must be closed.
    """

    def __init__(self, frame_cap: int = DEFAULT_FRAME_CAP) -> None:
        self._decoder = msgspec.msgpack.Decoder(AnyMessage)
        self._frame_cap = frame_cap
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> Iterator[AnyMessage]:
        """Yield every message completed by ``data``, in order.

        Messages that precede a bad frame in the same chunk are yielded first; the error is
        raised where the bad frame stands, so nothing that arrived intact is lost.
        """
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        buffer += data
        position = 0
        try:
            while len(buffer) - position >= HEADER_SIZE:
                length, checksum = HEADER.unpack_from(buffer, position)
                if length > self._frame_cap:
                    raise FrameTooLarge(length, self._frame_cap)
                end = position + HEADER_SIZE + length
                if len(buffer) < end:
                    break
                message = self._decode_body(buffer[position + HEADER_SIZE : end], checksum)
                position = end
                yield message
        except ProtocolError as error:
            self._error = error
            buffer.clear()
            raise
        finally:
            if self._error is None:
                del buffer[:position]

    def close(self) -> None:
        """The stream ended: an incomplete frame left in the buffer is an error."""
        if self._error is not None or not self._buffer:
            return
        have = len(self._buffer)
        if have < HEADER_SIZE:
            need = HEADER_SIZE
        else:
            need = HEADER_SIZE + HEADER.unpack_from(self._buffer, 0)[0]
        self._error = TruncatedFrame(have, need)
        self._buffer.clear()
        raise self._error

    def _decode_body(self, body: bytearray, checksum: int) -> AnyMessage:
        actual = _crc32(body)
        if actual != checksum:
            raise ChecksumMismatch(len(body), checksum, actual)
        try:
            return self._decoder.decode(body)
        except msgspec.ValidationError as error:
            raise _explain_invalid(body, error) from None
        except msgspec.DecodeError as error:
            raise MalformedFrame(f"frame of {len(body)} bytes is not msgpack: {error}") from None


def _explain_invalid(body: bytearray, error: msgspec.ValidationError) -> ProtocolError:
    """Turn msgspec's validation error into one that names the kind and the field."""
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
