"""The control socket's file: created so that only the sharder's user can connect, told apart
from a stale one a dead sharder left, and removed only while it is still this sharder's.

Apart from the server (``control_server``): this is about the file system and its races (two
sharders starting at once, a newer sharder binding the same path), not about requests.
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

from sharder.control import ControlError, reason_of

# One logger for the whole control socket, whichever of its modules speaks.
logger = logging.getLogger("sharder.control")

SOCKET_MODE = 0o600


class AlreadyRunning(ControlError):
    """Another sharder answers on the control socket this one was configured to use."""


class SocketFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        # (st_dev, st_ino) of the socket file this server bound: unlink_if_ours() removes only
        # that file, never one a later sharder bound at the same path.
        self._identity: tuple[int, int] | None = None

    async def bind(self) -> socket.socket:
        """A socket bound at ``path``, mode 0600; ``AlreadyRunning`` if a sharder answers there."""
        await self._remove_stale()
        return self._bind()

    def unlink_if_ours(self) -> None:
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

    async def _remove_stale(self) -> None:
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
            raise ControlError(f"cannot create control socket {path}: {reason_of(error)}") from None
        finally:
            os.umask(previous_umask)
        try:
            os.chmod(path, SOCKET_MODE)
            info = os.stat(path)
        except OSError as error:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise ControlError(f"cannot secure control socket {path}: {reason_of(error)}") from None
        self._identity = (info.st_dev, info.st_ino)
        mode = stat.S_IMODE(info.st_mode)
        if mode != SOCKET_MODE:
            sock.close()
            self.unlink_if_ours()
            raise ControlError(f"control socket {path} has mode {mode:o}, expected 600")
        return sock


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
        raise ControlError(f"cannot probe control socket {path}: {reason_of(error)}") from None
    writer.close()
    return True
