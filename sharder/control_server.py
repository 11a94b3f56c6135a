"""The master's control socket server: one request line in, one answer line out, per connection.

A unix stream socket, mode 0600 (``control_socket``). The server keeps serving whatever a
client does: a request that is not JSON, not a command or over ``MAX_REQUEST_BYTES``
(``control_requests``), a handler that fails or takes too long (``control_commands``), a client
that says nothing or does not read its answer. This module is only about connections and their
timeouts.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import msgspec

from sharder.control_commands import ControlHandler, answer
from sharder.control_requests import MAX_REQUEST_BYTES, error_answer
from sharder.control_socket import SocketFile

# One logger for the whole control socket, whichever of its modules speaks.
logger = logging.getLogger("sharder.control")


class ControlServer:
    """Serves ``handler`` on the unix socket at ``path``."""

    def __init__(
        self,
        path: Path,
        handler: ControlHandler,
        *,
        read_timeout: float = 5.0,
        handler_timeout: float = 30.0,
    ) -> None:
        self.path = path
        self._file = SocketFile(path)
        self._handler = handler
        self._read_timeout = read_timeout
        self._handler_timeout = handler_timeout
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Listen on ``path``; ``AlreadyRunning`` if a sharder already answers there."""
        if self._server is not None:
            raise RuntimeError("control server already started")
        sock = await self._file.bind()
        try:
            self._server = await asyncio.start_unix_server(
                self._serve_client, sock=sock, limit=MAX_REQUEST_BYTES
            )
        except BaseException:
            sock.close()
            self._file.unlink_if_ours()
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
        self._file.unlink_if_ours()
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
                reply = await answer(self._handler, line, self._handler_timeout)
            writer.write(msgspec.json.encode(reply) + b"\n")
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
        refusal = error_answer(f"request line longer than {MAX_REQUEST_BYTES} bytes")
        writer.write(msgspec.json.encode(refusal) + b"\n")
        writer.write_eof()
        try:
            async with asyncio.timeout(self._read_timeout):
                await writer.drain()
                while await reader.read(MAX_REQUEST_BYTES):
                    pass
        except TimeoutError:
            logger.info("dropped a control client that kept sending an oversized request")
