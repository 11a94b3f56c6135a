"""How ``sharder status``, ``stop``, ``restart`` and ``state`` reach a running sharder: the
control socket's client, and the errors of serving or reaching the socket.

The master serves it (``control_server``); the lines it carries are in ``control_requests``.
The client is kept apart from the server's code: the command line imports only this, so the
control commands start quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import msgspec

# A status answer grows with the shard count (about 100 bytes a shard); this only bounds a peer
# that is not a sharder.
MAX_ANSWER_BYTES = 16 * 1024 * 1024


class ControlError(Exception):
    """The control socket cannot be served or reached; the message says why."""


class ControlUnavailable(ControlError):
    """Nothing answers on the control socket: no sharder is running there."""


def reason_of(error: OSError) -> str:
    """Why a socket call failed, as the error messages put it."""
    return error.strerror or str(error)


async def call(path: Path, request: dict[str, object], timeout: float = 5.0) -> dict[str, Any]:
    """Send ``request`` to the sharder whose control socket is ``path`` and return its answer.

    Raises ``ControlUnavailable`` if nothing listens at ``path``, ``TimeoutError`` if no answer
    comes within ``timeout`` seconds (connecting included), and ``ControlError`` for an answer
    that is not a JSON object.
    """
    command = request.get("command")
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_unix_connection(
                    os.fspath(path), limit=MAX_ANSWER_BYTES
                )
            except (FileNotFoundError, ConnectionRefusedError) as error:
                raise ControlUnavailable(
                    f"no sharder is running: cannot connect to {path} ({reason_of(error).lower()})"
                ) from None
            except OSError as error:
                raise ControlError(f"cannot connect to {path}: {reason_of(error)}") from None
            try:
                writer.write(msgspec.json.encode(request) + b"\n")
                # The server may refuse a request before reading all of it; its answer still
                # waits to be read.
                with contextlib.suppress(ConnectionError):
                    await writer.drain()
                line = await reader.readline()
            except (ConnectionError, ValueError) as error:
                raise ControlError(f"control socket {path}: no answer ({error})") from None
            finally:
                writer.close()
    except TimeoutError:
        raise TimeoutError(
            f"the sharder did not answer {command!r} within {timeout:g} s (control socket {path})"
        ) from None
    if not line:
        raise ControlError(f"the sharder closed control socket {path} without answering")
    try:
        answer = msgspec.json.decode(line)
    except msgspec.DecodeError as error:
        raise ControlError(f"malformed answer on control socket {path}: {error}") from None
    if not isinstance(answer, dict):
        raise ControlError(f"malformed answer on control socket {path}: not a JSON object")
    return answer


def call_sync(path: Path, request: dict[str, object], timeout: float = 5.0) -> dict[str, Any]:
    """``call`` for code without an event loop (the command line)."""
    return asyncio.run(call(path, request, timeout))
