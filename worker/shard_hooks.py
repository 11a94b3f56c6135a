"""Hooks into hikari's shards: IDENTIFY waits for the master's grant, and a shard handed over
from a dead or restarted worker RESUMEs its session instead of starting a new one.

hikari has neither hook; both touch private attributes of ``GatewayShardImpl``, so hikari is
pinned to one minor version, ``check_hikari`` runs at start-up, and a test fails if an upgrade
moves what they need.

A shard IDENTIFYs through ``GatewayShardImpl._send_json`` inside
``_connect``, right after HELLO, whenever it has no session to resume: its first connection,
and after INVALID_SESSION, a fatal close or a refused RESUME. Gating that send (not the
connect) keeps the time between grant and IDENTIFY to a pipe round trip, however long the
websocket handshake took. The shard's heartbeats run meanwhile, so a long wait in the queue
does not time the connection out.

A shard RESUMEs instead of IDENTIFYing when it starts with ``_session_id``, ``_seq``,
``_resume_gateway_url`` and ``_user_id`` set (tried across processes: the new process starts
with an empty cache). ``install_resume`` sets them as the shard starts, and lets the events
Discord replays before RESUMED through (hikari would drop them).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import hikari
from hikari.impl.shard import GatewayShardImpl

from worker.spec import Session

SUPPORTED_HIKARI = "2.7."
IDENTIFY = 2
SESSION_SLOTS = frozenset({"_shard_id", "_session_id", "_seq", "_resume_gateway_url", "_user_id"})
Acquire = Callable[[int], Awaitable[None]]


class UnsupportedHikari(RuntimeError):
    pass


def check_hikari() -> None:
    """Fail loudly if this hikari is not the one the hook was written against."""
    if not hikari.__version__.startswith(SUPPORTED_HIKARI):
        raise UnsupportedHikari(
            f"hikari {hikari.__version__}; the identify hook needs {SUPPORTED_HIKARI}x"
        )
    send = getattr(GatewayShardImpl, "_send_json", None)
    if send is None or list(inspect.signature(send).parameters) != ["self", "data", "priority"]:
        raise UnsupportedHikari(
            "hikari's GatewayShardImpl._send_json(self, data, *, priority) changed"
        )
    connect_source = inspect.getsource(GatewayShardImpl._connect)
    if "_OP: _IDENTIFY" not in connect_source or "self._send_json(" not in connect_source:
        raise UnsupportedHikari("hikari's _connect no longer sends IDENTIFY through _send_json")
    if "_check_if_connected" not in inspect.getsource(GatewayShardImpl.get_user_id):
        raise UnsupportedHikari("hikari's get_user_id changed")
    missing = SESSION_SLOTS - set(GatewayShardImpl.__slots__)
    if missing:
        raise UnsupportedHikari(f"hikari's shard no longer keeps {', '.join(sorted(missing))}")
    if "self._seq is None" not in connect_source:
        raise UnsupportedHikari("hikari's _connect no longer chooses RESUME by _seq")


def install(acquire: Acquire, sent: Callable[[int], None]) -> None:
    """Gate every IDENTIFY of every shard in this process through ``acquire(shard_id)``, and
    tell ``sent(shard_id)`` once it has gone out."""
    check_hikari()
    original = GatewayShardImpl._send_json
    if getattr(original, "gated", False):
        raise RuntimeError("the identify hook is already installed")

    # Named as hikari names them, so that check_hikari still recognises the wrapped method.
    async def gated_send_json(
        self: GatewayShardImpl, data: dict[str, Any], *, priority: bool = False
    ) -> None:
        if data.get("op") != IDENTIFY:
            await original(self, data, priority=priority)
            return
        await acquire(self._shard_id)
        await original(self, data, priority=priority)
        sent(self._shard_id)

    gated_send_json.gated = True  # type: ignore[attr-defined]
    GatewayShardImpl._send_json = gated_send_json  # type: ignore[method-assign,assignment]


def session_of(shard: GatewayShardImpl) -> Session | None:
    if shard._session_id is None or shard._seq is None or shard._resume_gateway_url is None:
        return None
    return Session(shard._session_id, shard._seq, shard._resume_gateway_url)


def install_resume(sessions: dict[int, Session], user_id: int) -> None:
    """Shards in ``sessions`` RESUME them when they first start."""
    check_hikari()
    original = GatewayShardImpl.start
    pending = dict(sessions)

    async def start_resuming(shard: GatewayShardImpl) -> None:
        session = pending.pop(shard._shard_id, None)
        if session is not None:
            shard._session_id = session.session_id
            shard._seq = session.seq
            shard._resume_gateway_url = session.resume_url
            shard._user_id = hikari.Snowflake(user_id)
        await original(shard)

    GatewayShardImpl.start = start_resuming  # type: ignore[method-assign,assignment]

    # Discord replays the missed events before RESUMED, and hikari parses some of them (guilds,
    # messages) with get_user_id(), which refuses until the handshake is done: those events
    # would be dropped. The id is known from the start here, so it is answered at once.
    original_user_id = GatewayShardImpl.get_user_id

    def user_id_while_resuming(self: GatewayShardImpl) -> hikari.Snowflake:
        if self._user_id is not None:
            return self._user_id
        return original_user_id(self)

    GatewayShardImpl.get_user_id = user_id_while_resuming  # type: ignore[method-assign]
