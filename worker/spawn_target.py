"""The entry of every child process: the master names the child's main as ``module:function``.

``multiprocessing`` pickles a spawn target by reference, so a master that passed
``shard_worker.main`` itself would have to import it, and with it hikari, Pillow and the rest of
what its children run (about 35 MiB of the master's memory, never used there). The master
imports only this module; the child imports its main here, in its own fresh interpreter.
"""

from __future__ import annotations

import importlib
from typing import Any


def run_child(main: str, *arguments: Any) -> None:
    """Import ``module:function`` and call it with ``arguments``."""
    module_name, _, function_name = main.partition(":")
    getattr(importlib.import_module(module_name), function_name)(*arguments)
