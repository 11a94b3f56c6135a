"""Child processes end with the master: no orphan keeps a gateway session open.

The kernel's parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``) kills a child the moment
its parent dies, even by SIGKILL; the pipe's EOF is the second line, for a parent that is alive
but has let go of the child.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
# A child that finds it cannot work with what is installed (an unsupported hikari) exits with
# this (sysexits' EX_CONFIG): the master stops instead of restarting it in a loop.
EXIT_UNUSABLE = 78


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
