"""What a compute task may use: kernel limits on the process, and an audit hook on the task.

- Address space (``RLIMIT_AS``), set once: an allocation past it fails with ``MemoryError``
  instead of swapping the host.
- CPU time (``RLIMIT_CPU``), armed per task: the soft limit is moved to the CPU time used so far
  plus the task's allowance. Past it the kernel sends SIGXCPU, whose default action ends the
  process; the master sees ``killed by SIGXCPU`` and replaces it. The master's deadline
  usually comes first; this limit holds even when the master is slow or gone.
- No core files: a killed compute process leaves nothing on disk.
- While a task computes (``sealed``), a PEP 578 audit hook refuses what a computation never
  needs: opening files, sockets and name lookups, starting processes, loading libraries,
  ``exec``. What a task is handed comes in its arguments; what it fetches (emoji images) is
  fetched before it is sealed, by this process's own code, from the configured CDN only. An
  audit hook cannot be removed, so it stays installed and looks at a flag. The garbage
  collector's object lists, the short way to that flag, are refused too.

What it is: a guard against the bot's own task code doing by mistake what a computation never
should, and against inputs steering it there. What it is not: a security boundary against code
the bot author did not write. Audit hooks see only what CPython reports; native code and
libraries already loaded are beyond them, and frames still lead to the flag (``sys._getframe``
stays allowed: logging needs it). Hostile code must not run in a compute worker at all.
"""

from __future__ import annotations

import contextlib
import math
import resource
import sys
from collections.abc import Iterator

REFUSED_EVENTS = frozenset(
    {
        "open",
        "os.listdir",
        "os.scandir",
        "os.remove",
        "os.rename",
        "os.mkdir",
        "os.chmod",
        "os.chown",
        "os.chflags",
        "os.link",
        "os.symlink",
        "os.rmdir",
        "os.utime",
        "os.setxattr",
        "os.removexattr",
        "os.truncate",
        "shutil.rmtree",
        "socket.__new__",
        "socket.bind",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.sendto",
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "ctypes.dlopen",
        "exec",
        # The short way to the sandbox's own flag:
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
    }
)


class Sandbox:
    def __init__(self) -> None:
        self.sealed_now = False
        self._installed = False

    def limit_process(self, memory_bytes: int) -> None:
        """The process-wide limits: address space, and no core files."""
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (_capped(memory_bytes, hard), hard))

    def arm_cpu_limit(self, seconds: int) -> None:
        """Let the next task use ``seconds`` of CPU time from now."""
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = math.ceil(usage.ru_utime + usage.ru_stime)
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        resource.setrlimit(resource.RLIMIT_CPU, (_capped(used + seconds, hard), hard))

    def install(self) -> None:
        if not self._installed:
            sys.addaudithook(self._audit)
            self._installed = True

    @contextlib.contextmanager
    def sealed(self) -> Iterator[None]:
        """Within: the refused events raise ``PermissionError``."""
        self.install()
        self.sealed_now = True
        try:
            yield
        finally:
            self.sealed_now = False

    def _audit(self, event: str, _: tuple[object, ...]) -> None:
        if self.sealed_now and event in REFUSED_EVENTS:
            raise PermissionError(f"a compute task may not use {event}")


def _capped(limit: int, hard: int) -> int:
    return limit if hard == resource.RLIM_INFINITY else min(limit, hard)
