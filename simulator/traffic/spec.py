"""What traffic to make: the spec a test, benchmark or the control API sends, checked wherever
it is built, and the weighted choices it describes."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Annotated, Final, Literal, TypeVar

import msgspec

EventKind = Literal["message", "member_update", "presence_update", "interaction"]
ContentKind = Literal["chatter", "ping", "math", "jumbo"]

EVENT_KINDS: Final[tuple[EventKind, ...]] = (
    "message",
    "member_update",
    "presence_update",
    "interaction",
)
CONTENT_KINDS: Final[tuple[ContentKind, ...]] = ("chatter", "ping", "math", "jumbo")
DEFAULT_MIX: Final[Mapping[str, float]] = {
    "message": 0.85,
    "member_update": 0.05,
    "presence_update": 0.05,
    "interaction": 0.05,
}
DEFAULT_CONTENTS: Final[Mapping[str, float]] = {
    "chatter": 0.7,
    "ping": 0.1,
    "math": 0.1,
    "jumbo": 0.1,
}

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
K = TypeVar("K", bound=str)


class TrafficSpec(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What traffic to make; decoded from the control API's JSON, so every field is checked."""

    # Events per second; 0 means as fast as the loop allows (the benchmark's setting).
    rate: Annotated[float, msgspec.Meta(ge=0)] = 100.0
    # Seconds to run; None runs until stopped (or until ``count``).
    duration: Annotated[float, msgspec.Meta(gt=0)] | None = None
    # Events to send in all; None sends until stopped (or until ``duration``).
    count: Annotated[int, msgspec.Meta(ge=1)] | None = None
    seed: int = 1
    # How events spread over guilds: evenly, or a few guilds getting most of them.
    distribution: Literal["uniform", "skewed"] = "uniform"
    # Relative weights of event kinds; kinds left out never happen.
    mix: dict[str, NonNegative] = msgspec.field(default_factory=lambda: dict(DEFAULT_MIX))
    # Relative weights of what a message says.
    contents: dict[str, NonNegative] = msgspec.field(default_factory=lambda: dict(DEFAULT_CONTENTS))

    def __post_init__(self) -> None:
        # msgspec checks the Meta constraints only when decoding; these checks also hold for a
        # spec built in Python. A ValueError here reaches a JSON client as a ValidationError.
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be a finite number >= 0, got {self.rate}")
        if self.duration is not None and not (math.isfinite(self.duration) and self.duration > 0):
            raise ValueError(f"duration must be a finite number > 0, got {self.duration}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        _check_weights("mix", self.mix, EVENT_KINDS)
        _check_weights("contents", self.contents, CONTENT_KINDS)


def _check_weights(name: str, weights: Mapping[str, float], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(weights) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown {name} key(s) {', '.join(map(repr, unknown))}; "
            f"expected some of {', '.join(map(repr, allowed))}"
        )
    for key, weight in weights.items():
        if not (math.isfinite(weight) and weight >= 0):
            raise ValueError(f"{name}[{key!r}] must be a finite weight >= 0, got {weight}")
    if not sum(weights.values()) > 0:
        raise ValueError(f"{name} weights must add up to more than 0")


def cumulative_weights(
    weights: Mapping[str, float], order: tuple[K, ...]
) -> tuple[tuple[K, ...], list[float]]:
    """Kinds with a positive weight, in a fixed order, and their running totals for bisect.

    The fixed order, not the mapping's, keeps a seed's sequence the same however the spec's
    JSON happened to list its weights.
    """
    kinds = tuple(kind for kind in order if weights.get(kind, 0.0) > 0)
    return kinds, list(itertools.accumulate(weights[kind] for kind in kinds))
