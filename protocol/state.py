"""Shared state on the wire: which merge state each scope uses, how a state is encoded inside a
STATE_UPDATE, GUILD_SYNC or STATE_CHANGED, and how keys are named.

Keys: guild configuration and permissions by guild id, member activity by ``guild:user``, user
data by user id.
"""

from __future__ import annotations

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
    body = msgspec.msgpack.decode(data)
    if "lww" in body:
        lww = LwwMap()
        for name, (millis, counter, origin, value) in body["lww"].items():
            lww.fields[name] = (Stamp(millis, counter, origin), value)
        return lww
    if "counters" in body:
        counters = CounterMap()
        for name, rows in body["counters"].items():
            counters.counts[name] = {origin: (up, down) for origin, up, down in rows}
        return counters
    added = AddWinsSet()
    added.added = {
        element: {Stamp(*tag) for tag in tags} for element, tags in body["added"].items()
    }
    added.removed = {Stamp(*tag) for tag in body["removed"]}
    return added
