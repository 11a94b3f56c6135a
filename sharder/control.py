"""The master's control socket and its client: how ``sharder status``, ``stop``, ``restart`` and
``state`` reach a running sharder.

A unix stream socket, mode 0600 (only the sharder's user may talk to it). Each connection carries
one request line and one answer line, both JSON objects:

- ``{"command": "status"}`` -> ``{"ok": true, "status": <SharderStatus>}``
- ``{"command": "stop"}`` -> ``{"ok": true, "message": "stopping"}``
- ``{"command": "restart", "worker": 3}`` -> ``{"ok": true, "message": "..."}``
- ``{"command": "state_get", "scope": "guild_config", "key": "<guild id>"}`` ->
  ``{"ok": true, "value": <the merged value, null if never written>}``
- ``{"command": "state_set", "scope": "guild_config", "key": "<guild id>", "fields": {...}}`` ->
  ``{"ok": true, "version": <the key's new version>}`` (``guild_config`` and ``user_data`` only)

Anything the server cannot carry out is answered ``{"ok": false, "error": "<why>"}``: a request
that is not JSON, not one of the commands above or over ``MAX_REQUEST_BYTES``; a worker that does
not exist; a state change the store refuses; a handler that failed or took too long. The server
keeps serving after each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Any, Protocol

import msgspec

from protocol.framing import too_deep
from protocol.messages import StateScope
from sharder.config import describe
from sharder.status import SharderStatus

logger = logging.getLogger("sharder.control")

MAX_REQUEST_BYTES = 64 * 1024
# A status answer grows with the shard count (about 100 bytes a shard); this only bounds a peer
# that is not a sharder.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
SOCKET_MODE = 0o600


class ControlError(Exception):
    """The control socket cannot be served or reached; the message says why."""


class AlreadyRunning(ControlError):
    """Another sharder answers on the control socket this one was configured to use."""


class ControlUnavailable(ControlError):
    """Nothing answers on the control socket: no sharder is running there."""


class Request(msgspec.Struct, tag_field="command", forbid_unknown_fields=True):
    """Base of the requests; the tag field ``command`` says which one."""


class StatusRequest(Request, tag="status"):
    pass


class StopRequest(Request, tag="stop"):
    pass


class RestartRequest(Request, tag="restart"):
    worker: int


class StateGetRequest(Request, tag="state_get"):
    scope: StateScope
    key: str


class StateSetRequest(Request, tag="state_set"):
    scope: StateScope
    key: str
    fields: dict[str, Any]


AnyRequest = StatusRequest | StopRequest | RestartRequest | StateGetRequest | StateSetRequest
COMMANDS = ("status", "stop", "restart", "state_get", "state_set")


class BadRequest(Exception):
    """A request line the server cannot parse; the message is the answer's error."""


class ControlHandler(Protocol):
    """What the control socket acts on: the master's supervisor.

    ``stop`` and ``restart`` should start the action and return promptly: the server cancels a
    call that takes longer than its ``handler_timeout``, and ``stop`` must not wait for the
    shutdown that will close this server. ``restart`` raises ``ValueError`` with a message for
    the user (e.g. an unknown worker), which the client receives as the error.
    """

    def status(self) -> SharderStatus: ...

    async def stop(self) -> None: ...

    async def restart(self, worker_id: int) -> str: ...

    def state_get(self, scope: StateScope, key: str) -> Any: ...

    async def state_set(self, scope: StateScope, key: str, fields: dict[str, Any]) -> int: ...


def parse_request(line: bytes) -> AnyRequest:
    """The request on ``line``, or ``BadRequest`` saying what is wrong with it."""
    try:
        document = msgspec.json.decode(line)
    except msgspec.DecodeError as error:
        raise BadRequest(f"request is not valid JSON: {error}") from None
    except RecursionError:
        raise BadRequest(f"request is not valid JSON: {too_deep(len(line))}") from None
    if not isinstance(document, dict):
        raise BadRequest('a request is a JSON object, e.g. {"command": "status"}')
    command = document.get("command")
    if command is None:
        raise BadRequest(f'request has no "command"; commands are {", ".join(COMMANDS)}')
    if command not in COMMANDS:
        shown = msgspec.json.encode(command).decode()
        raise BadRequest(f"unknown command {shown}; commands are {', '.join(COMMANDS)}")
    try:
        request: AnyRequest = msgspec.convert(document, AnyRequest)
    except msgspec.ValidationError as error:
        raise BadRequest(f"bad {command} request: {describe(error)}") from None
    return request


def _error(message: str) -> dict[str, object]:
    return {"ok": False, "error": message}


class ControlServer:
    """Serves ``handler`` on the unix socket at ``path`` (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        handler: ControlHandler,
        *,
        read_timeout: float = 5.0,
        handler_timeout: float = 30.0,
    ) -> None:
        self.path = path
        self._handler = handler
        self._read_timeout = read_timeout
        self._handler_timeout = handler_timeout
        self._server: asyncio.AbstractServer | None = None
        # (st_dev, st_ino) of the socket file this server bound: close() removes only that file,
        # never one a later sharder bound at the same path.
        self._identity: tuple[int, int] | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Listen on ``path``; ``AlreadyRunning`` if a sharder already answers there."""
        if self._server is not None:
            raise RuntimeError("control server already started")
        await self._remove_stale_socket()
        sock = self._bind()
        try:
            self._server = await asyncio.start_unix_server(
                self._serve_client, sock=sock, limit=MAX_REQUEST_BYTES
            )
        except BaseException:
            sock.close()
            self._unlink_if_ours()
            raise
        logger.debug("control socket listening on %s", self.path)

    async def close(self, grace: float = 1.0) -> None:
        """Stop accepting, remove the socket file, and let requests in flight finish.

        Requests still running after ``grace`` seconds are cancelled. The task calling this
        (it may be serving the ``stop`` request that led here) is not waited for.
        """
        server = self._server
        if server is None:
            return
        self._server = None
        # Unlink while still listening: the bound socket keeps its inode from being reused, so
        # the identity check cannot mistake a newer sharder's file for ours.
        self._unlink_if_ours()
        server.close()
        in_flight = self._connections - {asyncio.current_task()}
        if in_flight:
            _, pending = await asyncio.wait(in_flight, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=grace)
        try:
            await asyncio.wait_for(server.wait_closed(), grace)
        except TimeoutError:
            logger.warning("control server did not close within %g s", grace)

    async def _remove_stale_socket(self) -> None:
        path = self.path
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(f"{path} exists and is not a socket; refusing to replace it")
        if await _answers(path):
            raise AlreadyRunning(f"a sharder is already running (control socket {path})")
        # Nobody listens: the file was left by a sharder that died without cleaning up.
        logger.info("removing stale control socket %s", path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as error:
            raise ControlError(f"cannot remove stale control socket {path}: {error}") from None

    def _bind(self) -> socket.socket:
        path = self.path
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # bind() creates the file with the process umask applied; a restrictive umask makes it
        # 0600 from its first instant, so no other user can connect in the gap before chmod. The
        # umask is process-wide, so nothing else may run (no await) until it is restored.
        previous_umask = os.umask(0o177)
        try:
            sock.bind(os.fspath(path))
        except OSError as error:
            sock.close()
            if error.errno == errno.EADDRINUSE:
                # Another sharder bound it between our probe and our bind.
                raise AlreadyRunning(
                    f"a sharder is already running (control socket {path})"
                ) from None
            raise ControlError(f"cannot create control socket {path}: {_reason(error)}") from None
        finally:
            os.umask(previous_umask)
        try:
            os.chmod(path, SOCKET_MODE)
            info = os.stat(path)
        except OSError as error:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise ControlError(f"cannot secure control socket {path}: {_reason(error)}") from None
        self._identity = (info.st_dev, info.st_ino)
        mode = stat.S_IMODE(info.st_mode)
        if mode != SOCKET_MODE:
            sock.close()
            self._unlink_if_ours()
            raise ControlError(f"control socket {path} has mode {mode:o}, expected 600")
        return sock

    def _unlink_if_ours(self) -> None:
        identity, self._identity = self._identity, None
        if identity is None:
            return
        try:
            info = os.lstat(self.path)
            if (info.st_dev, info.st_ino) == identity:
                os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as error:
            logger.warning("cannot remove control socket %s: %s", self.path, error)

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), self._read_timeout)
            except TimeoutError:
                logger.info(
                    "dropped a control client that sent no request within %g s", self._read_timeout
                )
                return
            except ValueError:
                # readline() raises ValueError when the line outgrows the reader's limit.
                await self._refuse_oversized(reader, writer)
                return
            else:
                if not line:
                    return  # connected and closed without a word: a liveness probe
                answer = await self._answer(line)
            writer.write(msgspec.json.encode(answer) + b"\n")
            await asyncio.wait_for(writer.drain(), self._read_timeout)
        except TimeoutError:
            logger.info("dropped a control client that did not read its answer")
        except ConnectionError:
            logger.debug("control client went away before its answer")
        finally:
            writer.close()
            self._connections.discard(task)

    async def _refuse_oversized(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer a request line over the limit, then discard the rest of it.

        Closing a unix socket with unread input resets the connection, and the client would lose
        the answer with it; so the rest is read and dropped until the client hangs up (or for
        ``read_timeout`` at most).
        """
        answer = _error(f"request line longer than {MAX_REQUEST_BYTES} bytes")
        writer.write(msgspec.json.encode(answer) + b"\n")
        writer.write_eof()
        try:
            async with asyncio.timeout(self._read_timeout):
                await writer.drain()
                while await reader.read(MAX_REQUEST_BYTES):
                    pass
        except TimeoutError:
            logger.info("dropped a control client that kept sending an oversized request")

    async def _answer(self, line: bytes) -> dict[str, object]:
        try:
            request = parse_request(line)
        except BadRequest as error:
            logger.debug("bad control request: %s", error)
            return _error(str(error))
        command = str(request.__struct_config__.tag)
        try:
            async with asyncio.timeout(self._handler_timeout) as deadline:
                match request:
                    case StatusRequest():
                        # Converted here, so a status that cannot be encoded is answered as
                        # the handler's failure.
                        return {"ok": True, "status": msgspec.to_builtins(self._handler.status())}
                    case StopRequest():
                        await self._handler.stop()
                        return {"ok": True, "message": "stopping"}
                    case RestartRequest(worker=worker):
                        return {"ok": True, "message": await self._handler.restart(worker)}
                    case StateGetRequest(scope=scope, key=key):
                        return {"ok": True, "value": self._handler.state_get(scope, key)}
                    case StateSetRequest(scope=scope, key=key, fields=fields):
                        version = await self._handler.state_set(scope, key, fields)
                        return {"ok": True, "version": version}
        except ValueError as error:
            return _error(str(error))
        except TimeoutError as error:
            if not deadline.expired():
                return self._failed(command, error)
            logger.warning("control %s did not finish within %g s", command, self._handler_timeout)
            return _error(f"{command} did not finish within {self._handler_timeout:g} s")
        except Exception as error:
            return self._failed(command, error)

    def _failed(self, command: str, error: Exception) -> dict[str, object]:
        logger.error("control %s failed", command, exc_info=error)
        return _error(f"{command} failed: {type(error).__name__}: {error}")


async def _answers(path: Path, timeout: float = 1.0) -> bool:
    """Whether a server accepts connections on the unix socket at ``path``."""
    try:
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_unix_connection(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        return False
    except TimeoutError:
        # connect() waits only when the listen backlog is full: the listener is alive, just busy.
        return True
    except OSError as error:
        raise ControlError(f"cannot probe control socket {path}: {_reason(error)}") from None
    writer.close()
    return True


def _reason(error: OSError) -> str:
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
                    f"no sharder is running: cannot connect to {path} ({_reason(error).lower()})"
                ) from None
            except OSError as error:
                raise ControlError(f"cannot connect to {path}: {_reason(error)}") from None
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
