"""Shared state on the wire: which merge state each scope uses, how a state is encoded inside a
STATE_UPDATE, GUILD_SYNC or STATE_CHANGED, and how keys are named.

Keys: guild configuration and permissions by guild id, member activity by ``guild:user``, user
data by user id, each id a snowflake written as Discord writes it (decimal, no sign, no leading
zero, below 2**64). Keys and states are checked where they enter (a worker's write, the control
socket, the store's file): one bad entry would otherwise fail every worker's start-up sync.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgspec

from protocol.merge import AddWinsSet, CounterMap, LwwMap, Stamp

MergeState = LwwMap | CounterMap | AddWinsSet
KINDS: dict[str, type[MergeState]] = {
    "guild_config": LwwMap,
    "member_activity": CounterMap,
    "permissions": AddWinsSet,
    "user_data": LwwMap,
}


@dataclass(slots=True)
class Entry:
    """A key's merged state and how many changes it has taken."""

    version: int
    state: MergeState


SNOWFLAKE = re.compile(r"[1-9][0-9]{0,19}")
# The shapes of an encoded state: stamps are (millis, counter, origin), counters (origin, up, down).
Tag = tuple[int, int, int]
LWW_FIELDS = dict[str, tuple[int, int, int, Any]]
COUNTER_ROWS = dict[str, list[tuple[int, int, int]]]
ADDED_TAGS = dict[str, list[Tag]]


def check_key(scope: str, key: str) -> str:
    """``key`` if it names something in ``scope``; ``ValueError`` saying why otherwise."""
    if scope not in KINDS:
        raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(KINDS)}")
    parts = key.split(":") if scope == "member_activity" else [key]
    shape = "guild:user" if scope == "member_activity" else "an id"
    if len(parts) != (2 if scope == "member_activity" else 1) or not all(
        SNOWFLAKE.fullmatch(part) and int(part) < 2**64 for part in parts
    ):
        raise ValueError(f"{scope} key {key[:80]!r} is not {shape} (snowflakes, as Discord writes)")
    return key


def key_of(scope: str, guild_id: int, user_id: int) -> str:
    if scope == "member_activity":
        return f"{guild_id}:{user_id}"
    return str(user_id if scope == "user_data" else guild_id)


def guild_of(scope: str, key: str) -> int | None:
    """The guild a key belongs to; None for user data, which every worker holds."""
    return None if scope == "user_data" else int(key.split(":", 1)[0])


def encode_state(state: MergeState) -> bytes:
    if isinstance(state, LwwMap):
        body: Any = {
            "lww": {name: [*stamp, value] for name, (stamp, value) in state.fields.items()}
        }
    elif isinstance(state, CounterMap):
        body = {
            "counters": {
                name: [[origin, up, down] for origin, (up, down) in per_origin.items()]
                for name, per_origin in state.counts.items()
            }
        }
    else:
        body = {
            "added": {
                element: [list(tag) for tag in tags] for element, tags in state.added.items()
            },
            "removed": [list(tag) for tag in state.removed],
        }
    return msgspec.msgpack.encode(body)


def decode_state(data: bytes) -> MergeState:
    """The state ``data`` encodes; ``ValueError`` (a msgspec error) unless every stamp and
    count has the types the merge needs: a wrong one would break every later merge of its key."""
    body = msgspec.msgpack.decode(data, type=dict[str, Any])
    if "lww" in body:
        lww = LwwMap()
        for name, (millis, counter, origin, value) in msgspec.convert(
            body["lww"], LWW_FIELDS
        ).items():
            lww.fields[name] = (Stamp(millis, counter, origin), value)
        return lww
    if "counters" in body:
        counters = CounterMap()
        for name, rows in msgspec.convert(body["counters"], COUNTER_ROWS).items():
            counters.counts[name] = {origin: (up, down) for origin, up, down in rows}
        return counters
    added = AddWinsSet()
    added.added = {
        element: {Stamp(*tag) for tag in tags}
        for element, tags in msgspec.convert(body.get("added"), ADDED_TAGS).items()
    }
    added.removed = {Stamp(*tag) for tag in msgspec.convert(body.get("removed"), list[Tag])}
    return added
