"""Protocol errors: each names what was wrong, so a log line is enough to find the cause.

Every error the wire can raise is a ``ProtocolError``. A connection that raises one of the
frame-level errors is poisoned: its byte stream can no longer be trusted, so it is closed.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base of everything the wire layer raises for bad input or a broken peer."""


class FrameTooLarge(ProtocolError):
    """A length header above the cap: rejected from the header, before the body is buffered."""

    def __init__(self, length: int, cap: int) -> None:
        super().__init__(f"frame length {length} bytes exceeds the cap of {cap} bytes")
        self.length = length
        self.cap = cap


class ChecksumMismatch(ProtocolError):
    """The body does not match the checksum in its header: corrupted or not a frame at all."""

    def __init__(self, length: int, expected: int, actual: int) -> None:
        super().__init__(
            f"frame of {length} bytes failed its checksum "
            f"(header says {expected:#010x}, body hashes to {actual:#010x})"
        )


class MalformedFrame(ProtocolError):
    """The body is not valid msgpack, or not a msgpack map with a message kind."""


class UnknownMessageKind(ProtocolError):
    """The body names a message kind that is not in the catalogue."""

    def __init__(self, kind: object) -> None:
        super().__init__(f"unknown message kind {kind!r}")
        self.kind = kind


class InvalidField(ProtocolError):
    """A known kind whose field has the wrong type or value."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class MissingField(InvalidField):
    """A known kind without one of its required fields."""


class TruncatedFrame(ProtocolError):
    """The peer closed the stream in the middle of a frame."""

    def __init__(self, have: int, need: int) -> None:
        super().__init__(f"peer closed mid-frame: received {have} of {need} bytes")
        self.have = have
        self.need = need


class VersionMismatch(ProtocolError):
    """The peer's hello announces another protocol version."""

    def __init__(self, ours: int, theirs: int, peer: str) -> None:
        super().__init__(
            f"protocol version mismatch: this process speaks version {ours}, {peer} speaks {theirs}"
        )
        self.ours = ours
        self.theirs = theirs


class HandshakeFailed(ProtocolError):
    """The peer did not open with a hello (wrong first message, timeout or early close)."""


class ConnectionClosed(ProtocolError):
    """The connection is closed: cleanly by the peer, by us, or after an earlier error."""


class PeerStalled(ProtocolError):
    """The peer stopped reading: more bytes wait to be written to it than a link may hold."""

    def __init__(self, waiting: int, limit: int) -> None:
        super().__init__(
            f"the peer stopped reading: {waiting:,} bytes wait to be written to it, "
            f"more than the {limit:,} a link may hold"
        )
