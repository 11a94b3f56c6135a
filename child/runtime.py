"""How every child process of the master starts and ends: one runtime for all kinds.

The master spawns each child with ``run_child(start, *arguments)``. ``multiprocessing`` pickles
a spawn target by reference, so a master that passed a child's own entry would have to import
it, and with it hikari, Pillow and aiohttp (about 35 MiB of the master's memory, never used
there): the master imports only this module, and names the child's entry as
``module:function`` for the child to import in its own fresh interpreter.

Then, the same for every kind: the child dies with the master, leaves Ctrl-C to it, logs under
its own label, and runs its entry (a coroutine function returning the exit code) on uvloop.

Children end with the master: no orphan keeps a gateway session open. The kernel's
parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``) kills a child the moment its parent
dies, even by SIGKILL; the link's EOF is the second line, for a parent that is alive but has
let go of the child.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from child import log_lines

PR_SET_PDEATHSIG = 1
# A child that finds it cannot work with what is installed (an unsupported hikari) exits with
# this (sysexits' EX_CONFIG): the master stops instead of restarting it in a loop.
EXIT_UNUSABLE = 78


@dataclass(frozen=True, slots=True)
class ChildStart:
    """What every child is started with, whatever its kind."""

    entry: str  # "module:function": an async function of the child's arguments, -> exit code
    label: str  # its name in the log: "worker-0", "compute-1", "rest-gate"
    master_pid: int  # the child exits if this is no longer its parent
    log_level: str
    log_format: str = "text"  # or "json": see child.log_lines


def run_child(start: ChildStart, *arguments: Any) -> None:
    """The spawn target of every child: set the process up, then run its entry to the end."""
    die_with_parent(start.master_pid)
    # Ctrl-C (or a hangup) in a terminal reaches the whole process group; the master decides
    # how we stop, and SIGHUP is its rolling restart.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log_lines.configure(start.log_level, start.log_format, *log_lines.role_and_id(start.label))
    import uvloop  # here, not at the top: the master that imports this module never runs it

    module_name, _, function_name = start.entry.partition(":")
    entry = getattr(importlib.import_module(module_name), function_name)
    sys.exit(uvloop.run(entry(*arguments)))


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent dies; exit at once if it already has."""
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"prctl(PR_SET_PDEATHSIG): {os.strerror(error)}")
    # The parent may have died before the signal was armed: then we were re-parented already.
    if os.getppid() != parent_pid:
        os._exit(1)
