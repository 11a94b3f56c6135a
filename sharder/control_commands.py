"""What the control socket's commands do: each request carried out on the master's handler.

Apart from the server (``control_server``), which only moves lines: here a request becomes a
call on the handler, bounded by a timeout, and every outcome, failures included, an answer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import msgspec

from protocol.messages import StateScope
from sharder.control_requests import (
    BadRequest,
    MoveRequest,
    ReshardRequest,
    RestartRequest,
    StateGetRequest,
    StateSetRequest,
    StatusRequest,
    StopRequest,
    error_answer,
    parse_request,
)
from sharder.status import SharderStatus

# One logger for the whole control socket, whichever of its modules speaks.
logger = logging.getLogger("sharder.control")


class ControlHandler(Protocol):
    """What the control socket acts on: the master's supervisor.

    ``stop``, ``restart`` and ``rolling_restart`` should start the action and return promptly:
    the server cancels a call that takes longer than its ``handler_timeout``, and ``stop`` must
    not wait for the shutdown that will close this server. ``restart`` raises ``ValueError``
    with a message for the user (e.g. an unknown worker), which the client receives as the
    error.
    """

    def status(self) -> SharderStatus: ...

    async def stop(self) -> None: ...

    async def restart(self, worker_id: int) -> str: ...

    def rolling_restart(self) -> str: ...

    def move_shard(self, shard_id: int, worker_id: int) -> str: ...

    async def reshard(self, shard_count: int | None) -> str: ...

    def state_get(self, scope: StateScope, key: str) -> Any: ...

    async def state_set(self, scope: StateScope, key: str, fields: dict[str, Any]) -> int: ...


async def answer(handler: ControlHandler, line: bytes, timeout: float) -> dict[str, object]:
    """The answer to the request on ``line``: the handler's result, or why there is none."""
    try:
        request = parse_request(line)
    except BadRequest as error:
        logger.debug("bad control request: %s", error)
        return error_answer(str(error))
    command = str(request.__struct_config__.tag)
    try:
        async with asyncio.timeout(timeout) as deadline:
            match request:
                case StatusRequest():
                    # Converted here, so a status that cannot be encoded is answered as the
                    # handler's failure.
                    return {"ok": True, "status": msgspec.to_builtins(handler.status())}
                case StopRequest():
                    await handler.stop()
                    return {"ok": True, "message": "stopping"}
                case RestartRequest(worker=worker):
                    if worker is None:  # rolling: every worker in turn
                        return {"ok": True, "message": handler.rolling_restart()}
                    return {"ok": True, "message": await handler.restart(worker)}
                case MoveRequest(shard=shard, worker=worker):
                    return {"ok": True, "message": handler.move_shard(shard, worker)}
                case ReshardRequest(shards=shards):
                    return {"ok": True, "message": await handler.reshard(shards)}
                case StateGetRequest(scope=scope, key=key):
                    return {"ok": True, "value": handler.state_get(scope, key)}
                case StateSetRequest(scope=scope, key=key, fields=fields):
                    version = await handler.state_set(scope, key, fields)
                    return {"ok": True, "version": version}
    except ValueError as error:
        return error_answer(str(error))
    except TimeoutError as error:
        if not deadline.expired():
            return _failed(command, error)
        logger.warning("control %s did not finish within %g s", command, timeout)
        return error_answer(f"{command} did not finish within {timeout:g} s")
    except Exception as error:
        return _failed(command, error)


def _failed(command: str, error: Exception) -> dict[str, object]:
    logger.error("control %s failed", command, exc_info=error)
    return error_answer(f"{command} failed: {type(error).__name__}: {error}")
