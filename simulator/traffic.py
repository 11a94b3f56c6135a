"""Seeded user traffic: the world's members talk, change nicknames, go idle and run commands.

A ``TrafficSpec`` says how much traffic (a rate, for a duration or a count of events), of what
kinds (messages, member and presence updates, slash commands) and over which guilds (evenly, or
skewed so a few guilds are busy and most are quiet, as on Discord). A ``TrafficPlan`` turns a
world and a spec into a sequence of ``TrafficEvent``s without touching the event loop or the
gateway: the same world and seed always give the same sequence, so tests can check the plan
alone and a benchmark run can be repeated exactly. The ``TrafficGenerator`` applies a plan's
events to the ``MessageLog`` and ``Gateway`` from one asyncio task.

The benchmark pushes tens of thousands of events a second through one core, so the per-event
path does a handful of ``random()`` calls against tables built once: no logging, no
``World.guild`` per event (it costs microseconds), no ``random.choices`` (its setup costs more
than the draw).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import random
import time
from bisect import bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Final, Literal, TypeVar

import msgspec

from simulator.gateway.hub import Gateway
from simulator.messages import MessageLog
from simulator.payloads import Payload, PayloadFactory
from simulator.world import WORDS, Guild, World

log = logging.getLogger("simulator.traffic")

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

STATUSES: Final = ("online", "idle", "dnd", "offline")
UNICODE_EMOJI: Final = ("😀", "🎉", "❤️", "👍", "🔥")
CHATTER_WORDS: Final = (
    *WORDS,
    "hello", "anyone", "around", "today", "tonight", "lol", "gg", "nice", "ok", "why",
    "the", "a", "is", "was", "ship", "it", "build", "broke", "again", "thanks",
)  # fmt: skip
OPERATORS: Final = ("+", "-", "*", "/")
STRING_OPTION: Final = 3  # Discord's application command option type for a string

SKEW_EXPONENT: Final = 1.1  # Zipf-like: the guild of rank r gets weight 1 / (r + 1) ** 1.1
TICK: Final = 0.01  # seconds between batches of a paced run
MAX_BATCH: Final = 256  # events between yields to the loop, so a burst never stalls it
TABLE_CACHE: Final = 8192  # guilds a plan keeps built (~2.5 kB each; the busy ones, when skewed)

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


@dataclass(frozen=True, slots=True)
class TrafficEvent:
    """One thing a user does. Fields a kind does not use keep their empty defaults."""

    kind: EventKind
    guild_id: int
    user_id: int
    channel_id: int = 0  # message, interaction (0: not in a channel)
    content: str = ""  # message
    nick: str | None = None  # member_update (None clears the nickname)
    status: str = ""  # presence_update
    command: str = ""  # interaction
    options: tuple[Payload, ...] = ()  # interaction


@dataclass(frozen=True, slots=True)
class _GuildTable:
    """A guild and its custom emoji in message syntax (<:name:id>, <a:name:id>), built once."""

    guild: Guild
    custom_emoji: tuple[str, ...]


def _cumulative(
    weights: Mapping[str, float], order: tuple[K, ...]
) -> tuple[tuple[K, ...], list[float]]:
    """Kinds with a positive weight, in a fixed order, and their running totals for bisect."""
    kinds = tuple(kind for kind in order if weights.get(kind, 0.0) > 0)
    return kinds, list(itertools.accumulate(weights[kind] for kind in kinds))


class TrafficPlan:
    """The deterministic sequence of events a spec makes in a world.

    Draws come from one ``random.Random(spec.seed)`` in a fixed order, so the sequence depends
    only on the world and the seed. When guilds are added to or removed from the world the plan
    rebuilds its guild table at the next draw: removed guilds get nothing, new ones join in.
    """

    def __init__(self, world: World, spec: TrafficSpec) -> None:
        self.world = world
        self.spec = spec
        self._random = random.Random(spec.seed).random
        self._kinds, self._kind_totals = _cumulative(spec.mix, EVENT_KINDS)
        self._contents, self._content_totals = _cumulative(spec.contents, CONTENT_KINDS)
        self._skewed = spec.distribution == "skewed"
        # A world without channels or without members other than the bot has nobody to talk.
        self._active = world.channels_per_guild > 0 and world.members_per_guild > 0
        self._table = functools.lru_cache(maxsize=TABLE_CACHE)(self._build_table)
        self._guild_ids: list[int] = []
        self._guild_totals: list[float] = []
        self._fingerprint: tuple[int, int] = (-1, -1)
        self._refresh()

    def guild(self, guild_id: int) -> Guild:
        """The world's guild, from the plan's cache (``World.guild`` rebuilds it every call)."""
        return self._table(guild_id).guild

    def next_event(self) -> TrafficEvent | None:
        """The next event, or None while the world has no guild anybody can talk in."""
        ids = self.world.guild_ids
        # Guilds are appended with ever larger ids and removed from anywhere, so the length and
        # the last id change whenever the set of guilds does: an O(1) check per draw.
        if (len(ids), ids[-1] if ids else 0) != self._fingerprint:
            self._refresh()
        guild_ids = self._guild_ids
        if not guild_ids:
            return None
        rand = self._random
        count = len(guild_ids)
        if self._skewed:
            index = bisect_right(self._guild_totals, rand() * self._guild_totals[-1], 0, count - 1)
        else:
            index = int(rand() * count)
        table = self._table(guild_ids[index])
        kind = self._kinds[
            bisect_right(self._kind_totals, rand() * self._kind_totals[-1], 0, len(self._kinds) - 1)
        ]
        guild = table.guild
        members = guild.member_ids
        user_id = members[1 + int(rand() * (len(members) - 1))]  # members[0] is the bot
        guild_id = guild.id
        if kind == "message":
            channels = guild.channel_ids
            return TrafficEvent(
                kind,
                guild_id,
                user_id,
                channel_id=channels[int(rand() * len(channels))],
                content=self._content(table),
            )
        if kind == "interaction":
            channels = guild.channel_ids
            channel_id = channels[int(rand() * len(channels))]
            if rand() < 0.5:
                return TrafficEvent(kind, guild_id, user_id, channel_id=channel_id, command="ping")
            option = {"name": "expression", "type": STRING_OPTION, "value": self._expression()}
            return TrafficEvent(
                kind, guild_id, user_id, channel_id=channel_id, command="math", options=(option,)
            )
        if kind == "member_update":
            return TrafficEvent(kind, guild_id, user_id, nick=self._nick())
        return TrafficEvent(kind, guild_id, user_id, status=STATUSES[int(rand() * len(STATUSES))])

    # -- tables --------------------------------------------------------------------------------

    def _refresh(self) -> None:
        ids = self.world.guild_ids
        self._fingerprint = (len(ids), ids[-1] if ids else 0)
        if not self._active:
            self._guild_ids, self._guild_totals = [], []
            return
        if not self._skewed:
            self._guild_ids, self._guild_totals = list(ids), []
            return
        # Rank guilds by a seeded hash of their id rather than a shuffle of the list: adding or
        # removing one guild then leaves the others' order alone, so busy guilds stay busy.
        salt = (self.spec.seed * 0x9E37_79B9_7F4A_7C15) & 0xFFFF_FFFF_FFFF_FFFF

        def rank_key(guild_id: int) -> int:
            return ((guild_id ^ salt) * 0xBF58_476D_1CE4_E5B9) & 0xFFFF_FFFF_FFFF_FFFF

        self._guild_ids = sorted(ids, key=rank_key)
        self._guild_totals = list(
            itertools.accumulate(
                1.0 / (rank + 1) ** SKEW_EXPONENT for rank in range(len(self._guild_ids))
            )
        )

    def _build_table(self, guild_id: int) -> _GuildTable:
        guild = self.world.guild(guild_id)
        return _GuildTable(
            guild=guild,
            custom_emoji=tuple(
                f"<{'a' if emoji.animated else ''}:{emoji.name}:{emoji.id}>"
                for emoji in guild.emojis
            ),
        )

    # -- what users say ------------------------------------------------------------------------

    def _content(self, table: _GuildTable) -> str:
        rand = self._random
        kind = self._contents[
            bisect_right(
                self._content_totals,
                rand() * self._content_totals[-1],
                0,
                len(self._contents) - 1,
            )
        ]
        if kind == "chatter":
            words = CHATTER_WORDS
            return " ".join(words[int(rand() * len(words))] for _ in range(1 + int(rand() * 6)))
        if kind == "ping":
            return "!ping"
        if kind == "math":
            return f"!math {self._expression()}"
        unicode = UNICODE_EMOJI[int(rand() * len(UNICODE_EMOJI))]
        customs = table.custom_emoji
        if not customs:
            return f"!jumbo {unicode}"
        custom = customs[int(rand() * len(customs))]
        shape = rand()  # a custom emoji alone, a unicode one alone, or both
        if shape < 0.4:
            return f"!jumbo {custom}"
        if shape < 0.6:
            return f"!jumbo {unicode}"
        return f"!jumbo {unicode} {custom}"

    def _expression(self) -> str:
        """A small arithmetic expression with a whole result: "2+2", "(3*7)-4", "12/4"."""
        rand = self._random
        left, right = 1 + int(rand() * 12), 1 + int(rand() * 12)
        operator = OPERATORS[int(rand() * len(OPERATORS))]
        if operator == "/":
            left *= right  # divide evenly
        simple = f"{left}{operator}{right}"
        if rand() < 0.5:
            return simple
        outer = OPERATORS[int(rand() * 3)]  # no outer division: it might not come out whole
        return f"({simple}){outer}{1 + int(rand() * 12)}"

    def _nick(self) -> str | None:
        rand = self._random
        if rand() < 0.25:
            return None  # the nickname is cleared
        return f"{WORDS[int(rand() * len(WORDS))]}_{int(rand() * 1000)}"


class TrafficGenerator:
    """Runs one traffic spec at a time as an asyncio task; the control API starts and stops it."""

    def __init__(
        self,
        world: World,
        payloads: PayloadFactory,
        gateway: Gateway,
        messages: MessageLog,
        clock: Callable[[], float] = time.monotonic,  # the simulator imports none of the sharder
    ) -> None:
        self._clock = clock
        self.world = world
        self.payloads = payloads
        self.gateway = gateway
        self.messages = messages
        self._task: asyncio.Task[None] | None = None
        self._spec: TrafficSpec | None = None
        self._sent = 0
        self._by_kind: dict[str, int] = {}
        self._started = 0.0
        self._ended: float | None = None
        self._error: str | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, spec: TrafficSpec) -> None:
        """Start making traffic; needs a running loop. One run at a time."""
        if self.running:
            raise RuntimeError("traffic is already running")
        loop = asyncio.get_running_loop()
        plan = TrafficPlan(self.world, spec)
        self._spec = spec
        self._sent = 0
        self._by_kind = dict.fromkeys(EVENT_KINDS, 0)
        self._started = self._clock()
        self._ended = None
        self._error = None
        self._task = loop.create_task(self._run(plan), name="simulator-traffic")
        self._task.add_done_callback(self._finished)

    async def stop(self) -> None:
        """Stop the run, if any, and wait until it has stopped."""
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        # asyncio.wait neither raises the task's cancellation nor swallows our own.
        await asyncio.wait({task})

    async def wait(self, timeout: float) -> None:
        """Wait for a run with a duration or count to end; TimeoutError if it has not by then.

        A run that failed raises its error here.
        """
        task = self._task
        if task is None:
            return
        if not task.done():
            await asyncio.wait({task}, timeout=timeout)
            if not task.done():
                raise TimeoutError(f"traffic still running after {timeout:g} s")
        error = None if task.cancelled() else task.exception()
        if error is not None:
            raise error

    def status(self) -> dict[str, object]:
        end = self._ended if self._ended is not None else self._clock()
        return {
            "running": self.running,
            "sent": self._sent,
            "by_kind": dict(self._by_kind),
            "spec": msgspec.to_builtins(self._spec) if self._spec is not None else None,
            "elapsed": round(end - self._started, 3) if self._task is not None else 0.0,
            "error": self._error,
        }

    # -- the task ------------------------------------------------------------------------------

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._ended = self._clock()
        if not task.cancelled() and (error := task.exception()) is not None:
            self._error = f"{type(error).__name__}: {error}"
            log.error("traffic stopped by an error", exc_info=error)

    async def _run(self, plan: TrafficPlan) -> None:
        spec = plan.spec
        rate, count = spec.rate, spec.count
        start = self._started
        deadline = None if spec.duration is None else start + spec.duration
        scheduled = 0  # events due so far, sent or not (an empty world sends none: no backlog)
        while True:
            now = self._clock()
            over = deadline is not None and now >= deadline
            if rate == 0:
                if over:
                    return
                batch = MAX_BATCH
            else:
                if deadline is not None and over:
                    now = deadline
                # Everything due since the start, not a fixed amount per tick: sleeps overshoot,
                # and this keeps the long-run rate exact. A backlog goes out MAX_BATCH at a time.
                due = int(rate * (now - start))
                batch = min(due - scheduled, MAX_BATCH)
                scheduled += batch
                if over and batch == 0:
                    return
            if count is not None:
                batch = min(batch, count - self._sent)
            sent = self._emit(plan, batch)
            if count is not None and self._sent >= count:
                return
            if rate == 0:
                # Yield between batches; with nobody to talk (no guilds), idle instead of spin.
                await asyncio.sleep(0 if sent else TICK)
            else:
                await asyncio.sleep(0 if scheduled < due else TICK)

    def _emit(self, plan: TrafficPlan, batch: int) -> int:
        """Apply up to ``batch`` events; fewer only when the world has no guilds."""
        next_event = plan.next_event
        by_kind = self._by_kind
        post = self.messages.post
        interact = self.messages.interact
        dispatch = self.gateway.dispatch
        payloads = self.payloads
        sent = 0
        for _ in range(batch):
            event = next_event()
            if event is None:
                break
            kind = event.kind
            if kind == "message":
                post(event.channel_id, event.user_id, event.content)
            elif kind == "interaction":
                interact(event.channel_id, event.user_id, event.command, list(event.options))
            elif kind == "member_update":
                guild = plan.guild(event.guild_id)
                update = payloads.member_update(guild, event.user_id, event.nick)
                dispatch(event.guild_id, "GUILD_MEMBER_UPDATE", update)
            else:
                guild = plan.guild(event.guild_id)
                presence = payloads.presence_update(guild, event.user_id, event.status)
                dispatch(event.guild_id, "PRESENCE_UPDATE", presence)
            by_kind[kind] += 1
            sent += 1
        self._sent += sent
        return sent
