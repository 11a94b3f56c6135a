from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
import uvloop

from tests.virtual_time import VirtualTimeLoop


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "virtual_time: the test's event loop runs on virtual time (virtual_time.py)"
    )


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], Any]]:
    """Async tests run on uvloop, the loop every sharder process uses; tests of timers on
    virtual time, so that they advance the clock instead of waiting for it."""
    if item.get_closest_marker("virtual_time") is not None:
        return {"virtual_time": VirtualTimeLoop}
    return {"uvloop": uvloop.new_event_loop}
