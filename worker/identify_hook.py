"""Every IDENTIFY a hikari shard sends first waits for the master's grant.

hikari has no identify hook. A shard IDENTIFYs through ``GatewayShardImpl._send_json`` inside
``_connect``, right after HELLO, whenever it has no session to resume: its first connection,
and after INVALID_SESSION, a fatal close or a refused RESUME. Gating that send (not the
connect) keeps the time between grant and IDENTIFY to a pipe round trip, however long the
websocket handshake took. The shard's heartbeats run meanwhile, so a long wait in the queue
does not time the connection out. hikari is pinned to one minor version for this,
``check_hikari`` runs at start-up, and a test fails if an upgrade moves what the hook needs.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import hikari
from hikari.impl.shard import GatewayShardImpl

SUPPORTED_HIKARI = "2.7."
IDENTIFY = 2
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
    if "_shard_id" not in GatewayShardImpl.__slots__:
        raise UnsupportedHikari("hikari's shard no longer keeps _shard_id")


def install(acquire: Acquire) -> None:
    """Gate every IDENTIFY of every shard in this process through ``acquire(shard_id)``."""
    check_hikari()
    original = GatewayShardImpl._send_json
    if getattr(original, "gated", False):
        raise RuntimeError("the identify hook is already installed")

    async def gated_send_json(
        shard: GatewayShardImpl, data: dict[str, Any], *, priority: bool = False
    ) -> None:
        if data.get("op") == IDENTIFY:
            await acquire(shard._shard_id)
        await original(shard, data, priority=priority)

    gated_send_json.gated = True  # type: ignore[attr-defined]
    GatewayShardImpl._send_json = gated_send_json  # type: ignore[method-assign,assignment]
