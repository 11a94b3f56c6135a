"""IDENTIFY and RESUME: what each must carry, what the gateway's limits allow, and the session
each starts or takes back.

Each refusal closes with the code Discord documents for it. The identify bucket and session
budget are enforced leniently by default: an offender is counted (and logged) but served, so a
test reads the violation instead of debugging a close; ``strict`` closes it with 4008 instead.
"""

from __future__ import annotations

import logging
import secrets
from typing import TYPE_CHECKING, Any

from simulator.gateway.protocol import (
    GUILDS,
    KNOWN_INTENTS,
    PRIVILEGED_INTENTS,
    CloseCode,
    Op,
    encode,
)
from simulator.gateway.sharding import sharding_required
from simulator.sessions import InvalidSeq, Session

if TYPE_CHECKING:  # the connection calls in here; at run time this module needs only its API
    from simulator.gateway.connection import GatewayConnection

log = logging.getLogger("simulator.gateway")


async def identify(connection: GatewayConnection, data: object) -> None:
    payload = await _authenticate(connection, data)
    if payload is None:
        return
    gateway, stats = connection.gateway, connection.stats
    config = gateway.config
    shard = payload.get("shard", [0, 1])
    if not (
        isinstance(shard, list)
        and len(shard) == 2
        and all(type(part) is int for part in shard)
        and 0 <= shard[0] < shard[1]
    ):
        await connection.close(CloseCode.INVALID_SHARD, f"invalid shard {shard!r}")
        return
    shard_id, shard_count = shard
    intents = payload.get("intents")
    if type(intents) is not int or not 0 <= intents <= KNOWN_INTENTS:
        await connection.close(CloseCode.INVALID_INTENTS, f"invalid intents {intents!r}")
        return
    if intents & PRIVILEGED_INTENTS & ~config.allowed_privileged_intents:
        await connection.close(CloseCode.DISALLOWED_INTENTS, "privileged intents not enabled")
        return
    guild_ids = gateway.shard_guilds(shard_id, shard_count)
    refusal = sharding_required(len(guild_ids), config.max_guilds_per_shard)
    if refusal is not None:
        await connection.close(CloseCode.SHARDING_REQUIRED, refusal)
        return
    stats.identifies += 1
    if not gateway.identify_bucket(shard_id).try_acquire():
        stats.identify_violations += 1
        log.warning("shard %d identified inside its bucket's window", shard_id)
        if config.strict:
            await connection.close(CloseCode.RATE_LIMITED, "identify bucket window not over")
            return
    if not gateway.session_budget.try_acquire():
        stats.session_budget_violations += 1
        log.warning("shard %d identified with the session start budget spent", shard_id)
        if config.strict:
            await connection.close(CloseCode.RATE_LIMITED, "session start limit reached")
            return
    session = Session(secrets.token_hex(16), shard_id, shard_count, intents, config.resume_buffer)
    gateway.sessions.add(session)
    connection.attach(session)
    ready = gateway.payloads.ready(
        session_id=session.session_id,
        resume_url=gateway.url,
        shard=(shard_id, shard_count),
        guild_ids=guild_ids,
    )
    session.dispatch(b"READY", encode(ready))
    if intents & GUILDS:
        gateway.stream_guilds(session, guild_ids)


async def resume(connection: GatewayConnection, data: object) -> None:
    payload = await _authenticate(connection, data)
    if payload is None:
        return
    session_id, seq = payload.get("session_id"), payload.get("seq")
    if not isinstance(session_id, str) or not (seq is None or type(seq) is int):
        await connection.close(CloseCode.DECODE_ERROR, "RESUME needs session_id and seq")
        return
    sessions = connection.gateway.sessions
    session = sessions.resumable(session_id)
    if session is None:
        # Not a close: the connection stays, and the client may IDENTIFY on it.
        connection.stats.resumes_refused += 1
        connection.send_op(Op.INVALID_SESSION, False)
        return
    try:
        missed = session.missed_since(seq or 0)
    except InvalidSeq as error:
        sessions.end(session)
        await connection.close(CloseCode.INVALID_SEQ, str(error))
        return
    connection.take_over(session, missed)


async def _authenticate(connection: GatewayConnection, data: object) -> dict[str, Any] | None:
    """The payload of an IDENTIFY or RESUME from a client that may send one; None once closed."""
    if connection.session is not None:
        await connection.close(CloseCode.ALREADY_AUTHENTICATED, "already authenticated")
        return None
    if not isinstance(data, dict):
        await connection.close(CloseCode.DECODE_ERROR, "d must be an object")
        return None
    if data.get("token") != connection.gateway.world.token():
        await connection.close(CloseCode.AUTHENTICATION_FAILED, "authentication failed")
        return None
    return data
