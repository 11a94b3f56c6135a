"""A child's life: its state moves only along the edges of the diagram, and an illegal edge is
a bug that raises."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from sharder.lifecycle import EDGES, ChildHandle, IllegalTransition


def test_a_child_is_spawned_serves_stops_and_can_start_again() -> None:
    handle = ChildHandle(0, 0.1)
    path = ["spawning", "starting", "ready", "starting", "ready", "stopping", "stopped", "spawning"]
    for state in path:
        handle.transition(state)  # type: ignore[arg-type]
        assert handle.state == state


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ([], "ready"),  # a child never spawned cannot serve
        ([], "stopping"),  # nor be asked to stop
        (["spawning", "backoff"], "ready"),  # a dead child does not serve
        (["spawning", "backoff"], "stopping"),
        (["spawning", "failed"], "starting"),
        (["spawning", "ready", "stopping"], "ready"),  # a stopping child does not serve again
    ],
)
def test_an_edge_the_diagram_does_not_have_raises_and_keeps_the_state(
    path: list[str], illegal: str
) -> None:
    handle = ChildHandle(3, 0.1)
    for state in path:
        handle.transition(state)  # type: ignore[arg-type]
    before = handle.state
    with pytest.raises(IllegalTransition, match=f"child 3: {before} -> {illegal}"):
        handle.transition(illegal)  # type: ignore[arg-type]
    assert handle.state == before


def test_a_second_process_cannot_be_spawned_before_the_first_is_reaped() -> None:
    handle = ChildHandle(1, 0.1)
    process: Any = SimpleNamespace(pid=4242)
    handle.spawned(process, now=0.0)
    with pytest.raises(IllegalTransition, match="pid 4242 is not reaped"):
        handle.spawned(process, now=1.0)
    handle.forget_process()
    handle.spawned(process, now=2.0)  # a planned restart: the last process is gone
    assert handle.state == "spawning" and handle.spawned_at == 2.0


def test_every_state_can_be_left_and_the_down_states_only_by_a_spawn_or_a_stop() -> None:
    assert all(EDGES[state] for state in EDGES)
    for down in ("backoff", "failed", "stopped"):
        assert EDGES[down] <= {"spawning", "stopped"}
