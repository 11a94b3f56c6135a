"""The compute sandbox in this process: what a sealed task may not do, and the CPU limit it gets.

The audit hook stays installed in the test process once added; it acts only while sealed.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from worker.compute_math import evaluate
from worker.compute_sandbox import Sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    yield Sandbox()
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def refused_actions(tmp_path: Path) -> dict[str, Callable[[], object]]:
    existing = tmp_path / "secret.txt"
    existing.write_text("secret")
    return {
        "read a file": lambda: existing.read_text(),
        "write a file": lambda: (tmp_path / "new.txt").write_text("x"),
        "list a directory": lambda: os.listdir(tmp_path),
        "open a socket": lambda: socket.socket(),
        "look up a name": lambda: socket.getaddrinfo("localhost", 80),
        "start a process": lambda: subprocess.run(["true"], check=False),
        "run code": lambda: exec("1 + 1"),
        "make a symlink": lambda: os.symlink(existing, tmp_path / "link"),
        "make a hard link": lambda: os.link(existing, tmp_path / "hard"),
        "remove a directory": lambda: os.rmdir(tmp_path),
        "change an owner": lambda: os.chown(existing, -1, -1),
        "touch a file": lambda: os.utime(existing),
        "list every object": lambda: gc.get_objects(),
        "find who refers to the sandbox": lambda: gc.get_referrers(Sandbox),
    }


@pytest.mark.parametrize(
    "action",
    [
        "read a file",
        "write a file",
        "list a directory",
        "open a socket",
        "look up a name",
        "start a process",
        "run code",
        "make a symlink",
        "make a hard link",
        "remove a directory",
        "change an owner",
        "touch a file",
        "list every object",
        "find who refers to the sandbox",
    ],
)
def test_a_sealed_task_may_not(action: str, sandbox: Sandbox, tmp_path: Path) -> None:
    attempt = refused_actions(tmp_path)[action]
    with sandbox.sealed(), pytest.raises(PermissionError, match="a compute task may not use"):
        attempt()


def test_a_sealed_task_may_still_log(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    with sandbox.sealed(), caplog.at_level(logging.INFO):
        logging.getLogger("a bot task").info("computing")  # finds its caller through a frame
    assert "computing" in caplog.text


def test_outside_a_task_everything_is_allowed_again(sandbox: Sandbox, tmp_path: Path) -> None:
    with sandbox.sealed(), pytest.raises(PermissionError):
        (tmp_path / "x").write_text("no")
    (tmp_path / "x").write_text("yes")
    assert (tmp_path / "x").read_text() == "yes"
    socket.socket().close()


def test_a_sealed_task_cannot_import_new_code(sandbox: Sandbox, tmp_path: Path) -> None:
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "sealed_import_probe.py").write_text("VALUE = 1\n")
    try:
        # The import system cannot list the directory nor open the file: not found.
        with sandbox.sealed(), pytest.raises(ImportError):
            __import__("sealed_import_probe")
    finally:
        sys.path.remove(str(tmp_path))


def test_math_runs_sealed(sandbox: Sandbox) -> None:
    with sandbox.sealed():
        assert evaluate("x = 3; sqrt(x**2 + 4**2) + factorial(5)") == 125.0


def test_the_cpu_limit_is_what_was_used_plus_the_allowance(sandbox: Sandbox) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    sandbox.arm_cpu_limit(3)
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    assert used + 3 <= soft <= used + 4  # the clock may tick over a second meanwhile
    assert hard == resource.RLIM_INFINITY or soft <= hard
