"""Loading the user's code named in the config as ``module:function``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def load_entry_point(entry_point: str) -> Callable[..., Any]:
    """The function ``entry_point`` names; ``TypeError`` if the module has no such function."""
    module_name, _, function_name = entry_point.partition(":")
    module = importlib.import_module(module_name)
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TypeError(
            f"entry point {entry_point!r}: {module_name} has no function {function_name}"
        )
    return function  # type: ignore[no-any-return]
