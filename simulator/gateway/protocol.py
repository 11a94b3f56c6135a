"""The gateway's wire: opcodes, close codes, intents, and the limits on what a client sends."""

from __future__ import annotations

import enum
from typing import Final

import msgspec


class Op(enum.IntEnum):
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11
    REQUEST_SOUNDBOARD_SOUNDS = 31


CLIENT_OPS: Final = frozenset(
    {
        Op.HEARTBEAT,
        Op.IDENTIFY,
        Op.PRESENCE_UPDATE,
        Op.VOICE_STATE_UPDATE,
        Op.RESUME,
        Op.REQUEST_GUILD_MEMBERS,
        Op.REQUEST_SOUNDBOARD_SOUNDS,
    }
)


class CloseCode(enum.IntEnum):
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


# Closes after which Discord will not RESUME the session: a normal close by the client, or a
# code whose documentation says "start a new session".
SESSION_ENDING_CLOSES: Final = frozenset(
    {1000, 1001, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014}
)

GUILDS: Final = 1 << 0
GUILD_MEMBERS: Final = 1 << 1
GUILD_PRESENCES: Final = 1 << 8
GUILD_MESSAGES: Final = 1 << 9
MESSAGE_CONTENT: Final = 1 << 15
KNOWN_INTENTS: Final = (1 << 26) - 1
PRIVILEGED_INTENTS: Final = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
EVENT_INTENTS: Final = {
    "GUILD_CREATE": GUILDS,
    "GUILD_DELETE": GUILDS,
    "MESSAGE_CREATE": GUILD_MESSAGES,
    "GUILD_MEMBER_UPDATE": GUILD_MEMBERS,
    "PRESENCE_UPDATE": GUILD_PRESENCES,
}

API_VERSIONS: Final = frozenset({"9", "10"})
MAX_CLIENT_PAYLOAD: Final = 4096  # bytes; Discord closes larger payloads with 4002

encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder().decode
