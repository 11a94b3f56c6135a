"""What a session learns of its guilds: a GUILD_CREATE for each after READY, member chunks when
it asks (op 8)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final

from simulator.gateway.protocol import GUILD_MEMBERS, CloseCode, encode
from simulator.payloads import PayloadFactory
from simulator.sessions import Session
from simulator.world import World

if TYPE_CHECKING:  # the connection calls in here; at run time this module needs only its API
    from simulator.gateway.connection import GatewayConnection

GUILD_STREAM_SLICE: Final = 64  # GUILD_CREATEs built between yields to the event loop


async def stream_guild_creates(
    world: World, payloads: PayloadFactory, session: Session, guild_ids: list[int]
) -> None:
    """GUILD_CREATE for each of a new session's guilds, a slice at a time: a shard of thousands
    of guilds must not stall every other connection while its payloads are built."""
    for start in range(0, len(guild_ids), GUILD_STREAM_SLICE):
        for guild_id in guild_ids[start : start + GUILD_STREAM_SLICE]:
            if session.ended:
                return
            if not world.has_guild(guild_id):
                continue  # removed while streaming
            payload = payloads.guild_create(world.guild(guild_id), available=True)
            session.dispatch(b"GUILD_CREATE", encode(payload))
            session.guild_ids.add(guild_id)
        await asyncio.sleep(0)


async def request_guild_members(connection: GatewayConnection, data: object) -> None:
    """Op 8: one chunk with every member of each requested guild the session has."""
    session = connection.session
    assert session is not None, "the connection routes op 8 only once identified"
    if not isinstance(data, dict) or "guild_id" not in data:
        await connection.close(CloseCode.DECODE_ERROR, "REQUEST_GUILD_MEMBERS needs guild_id")
        return
    if not session.intents & GUILD_MEMBERS:
        await connection.close(CloseCode.DISALLOWED_INTENTS, "member chunks need GUILD_MEMBERS")
        return
    requested = data["guild_id"]
    try:
        guild_ids = [
            int(raw) for raw in (requested if isinstance(requested, list) else [requested])
        ]
    except (TypeError, ValueError):
        await connection.close(CloseCode.DECODE_ERROR, f"invalid guild_id {requested!r}")
        return
    world, payloads = connection.gateway.world, connection.gateway.payloads
    for guild_id in guild_ids:
        if guild_id not in session.guild_ids:
            continue
        guild = world.guild(guild_id)
        chunk = {
            "guild_id": str(guild_id),
            "members": [payloads.member(guild, member) for member in guild.member_ids],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "nonce": data.get("nonce"),
        }
        session.dispatch(b"GUILD_MEMBERS_CHUNK", encode(chunk))
