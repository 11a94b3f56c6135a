"""The wire between the master and its child processes: messages, frames, connections, routing.

This package does no I/O policy of its own (no retries, no timeouts beyond the handshake): it
gives the master and the workers typed messages and a connection that never drops or hangs.
"""

from protocol.connection import Connection, open_connection, socket_from_pipe
from protocol.errors import (
    ChecksumMismatch,
    ConnectionClosed,
    FrameTooLarge,
    HandshakeFailed,
    InvalidField,
    MalformedFrame,
    MissingField,
    PeerStalled,
    ProtocolError,
    TruncatedFrame,
    UnknownMessageKind,
    VersionMismatch,
)
from protocol.framing import DEFAULT_FRAME_CAP, Frame, FrameDecoder, FrameEncoder
from protocol.messages import CATALOGUE, PROTOCOL_VERSION, AnyMessage, Message, deadline_in
from protocol.routing import RoutingTable, contiguous_assignment, shard_for_guild

__all__ = [
    "CATALOGUE",
    "DEFAULT_FRAME_CAP",
    "PROTOCOL_VERSION",
    "AnyMessage",
    "ChecksumMismatch",
    "Connection",
    "ConnectionClosed",
    "Frame",
    "FrameDecoder",
    "FrameEncoder",
    "FrameTooLarge",
    "HandshakeFailed",
    "InvalidField",
    "MalformedFrame",
    "Message",
    "MissingField",
    "PeerStalled",
    "ProtocolError",
    "RoutingTable",
    "TruncatedFrame",
    "UnknownMessageKind",
    "VersionMismatch",
    "contiguous_assignment",
    "deadline_in",
    "open_connection",
    "shard_for_guild",
    "socket_from_pipe",
]
