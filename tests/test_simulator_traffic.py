"""Simulated traffic: a deterministic plan of user events, and a generator that sends it. The
generator's tests run on virtual time: ``advance`` moves the clock without waiting."""

from __future__ import annotations

import ast
import asyncio
import operator
import re
import time
from collections import Counter
from collections.abc import Callable
from fractions import Fraction

import msgspec
import pytest

from simulator.config import SimulatorConfig
from simulator.gateway.hub import Gateway
from simulator.messages import MessageLog
from simulator.payloads import PayloadFactory, SnowflakeFactory
from simulator.sessions import Session
from simulator.stats import Stats
from simulator.traffic.generator import TICK, TrafficGenerator
from simulator.traffic.plan import TrafficEvent, TrafficPlan
from simulator.traffic.spec import DEFAULT_CONTENTS, DEFAULT_MIX, TrafficSpec
from simulator.traffic.speech import UNICODE_EMOJI
from simulator.world import World, guild_of
from tests.virtual_time import advance, virtual_clock

pytestmark = pytest.mark.virtual_time

ALL_INTENTS = (1 << 26) - 1
CUSTOM_EMOJI = re.compile(r"<(a?):(\w+):(\d+)>")
EXPRESSION = re.compile(r"[0-9+\-*/()]+")
EVENT_NAMES = {
    "message": "MESSAGE_CREATE",
    "member_update": "GUILD_MEMBER_UPDATE",
    "presence_update": "PRESENCE_UPDATE",
    "interaction": "INTERACTION_CREATE",
}


def events(world: World, spec: TrafficSpec, n: int) -> list[TrafficEvent]:
    plan = TrafficPlan(world, spec)
    drawn = [plan.next_event() for _ in range(n)]
    assert all(event is not None for event in drawn)
    return [event for event in drawn if event is not None]


OPERATORS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate(expression: str) -> Fraction:
    """The value of a traffic math expression, without eval: + - * / and parentheses."""
    assert EXPRESSION.fullmatch(expression), expression

    def value(node: ast.expr) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](value(node.left), value(node.right))
        assert isinstance(node, ast.Constant) and type(node.value) is int, ast.dump(node)
        return Fraction(node.value)

    return value(ast.parse(expression, mode="eval").body)


# -- the plan ------------------------------------------------------------------------------------


def test_same_seed_same_events_and_different_seed_different_events() -> None:
    world = World(seed=1, guild_count=50)
    first = events(world, TrafficSpec(seed=5), 2000)
    again = events(World(seed=1, guild_count=50), TrafficSpec(seed=5), 2000)
    other = events(world, TrafficSpec(seed=6), 2000)
    assert first == again
    assert first != other
    skewed = TrafficSpec(seed=5, distribution="skewed")
    assert events(world, skewed, 2000) == events(world, skewed, 2000)


def test_kinds_and_contents_follow_the_weights() -> None:
    world = World(seed=2, guild_count=100)
    drawn = events(world, TrafficSpec(seed=3), 20_000)
    kinds: Counter[str] = Counter(event.kind for event in drawn)
    for kind, weight in DEFAULT_MIX.items():
        assert abs(kinds[kind] / len(drawn) - weight) < 0.03, (kind, kinds)

    messages = [event.content for event in drawn if event.kind == "message"]
    contents = Counter(
        "ping"
        if content == "!ping"
        else "math"
        if content.startswith("!math ")
        else "jumbo"
        if content.startswith("!jumbo ")
        else "chatter"
        for content in messages
    )
    for kind, weight in DEFAULT_CONTENTS.items():
        assert abs(contents[kind] / len(messages) - weight) < 0.03, (kind, contents)

    only = events(world, TrafficSpec(mix={"presence_update": 1.0, "message": 0.0}), 500)
    assert {event.kind for event in only} == {"presence_update"}
    assert {event.status for event in only} == {"online", "idle", "dnd", "offline"}


def test_skewed_traffic_concentrates_on_a_few_guilds_and_uniform_does_not() -> None:
    world = World(seed=4, guild_count=200)

    def top_tenth_share(spec: TrafficSpec) -> float:
        per_guild = Counter(event.guild_id for event in events(world, spec, 20_000))
        busiest = sorted(per_guild.values(), reverse=True)[: len(world.guild_ids) // 10]
        return sum(busiest) / 20_000

    assert top_tenth_share(TrafficSpec(distribution="skewed")) > 0.5
    assert top_tenth_share(TrafficSpec(distribution="uniform")) < 0.2
    # Which guilds are busy depends on the seed.
    busiest = [
        Counter(
            e.guild_id for e in events(world, TrafficSpec(seed=s, distribution="skewed"), 2000)
        ).most_common(1)[0][0]
        for s in (1, 2, 3, 4)
    ]
    assert len(set(busiest)) > 1


def test_every_event_stays_inside_its_guild_and_is_well_formed() -> None:
    world = World(seed=5, guild_count=30)
    for event in events(world, TrafficSpec(seed=9, distribution="skewed"), 5000):
        guild = world.guild(event.guild_id)
        assert event.user_id in guild.member_ids[1:], "a member, never the bot"
        if event.kind in ("message", "interaction"):
            assert event.channel_id in guild.channel_ids
            assert guild_of(event.channel_id) == event.guild_id
        if event.kind == "message":
            assert event.content
        elif event.kind == "interaction":
            assert event.command in ("ping", "math")
            if event.command == "ping":
                assert event.options == ()
            else:
                (option,) = event.options
                assert option["name"] == "expression"
                assert option["type"] == 3
                assert EXPRESSION.fullmatch(option["value"])
        elif event.kind == "member_update":
            assert event.nick is None or event.nick
        else:
            assert event.status in ("online", "idle", "dnd", "offline")


def test_math_expressions_are_small_and_come_out_whole() -> None:
    world = World(seed=6, guild_count=10)
    spec = TrafficSpec(mix={"message": 1.0}, contents={"math": 1.0})
    expressions = [event.content.removeprefix("!math ") for event in events(world, spec, 2000)]
    assert any("(" in expression for expression in expressions)
    assert {op for expression in expressions for op in "+-*/" if op in expression} == set("+-*/")
    for expression in expressions:
        assert EXPRESSION.fullmatch(expression), expression
        assert len(expression) <= 12
        assert evaluate(expression).denominator == 1, expression


def test_jumbo_messages_carry_the_guilds_own_custom_emoji() -> None:
    spec = TrafficSpec(mix={"message": 1.0}, contents={"jumbo": 1.0})
    world = World(seed=7, guild_count=20, emojis_per_guild=3)
    customs = 0
    for event in events(world, spec, 2000):
        assert event.content.startswith("!jumbo ")
        parts = event.content.removeprefix("!jumbo ").split(" ")
        assert 1 <= len(parts) <= 2
        emojis = {(e.name, e.id, e.animated) for e in world.guild(event.guild_id).emojis}
        for part in parts:
            found = CUSTOM_EMOJI.fullmatch(part)
            if found is None:
                assert part in UNICODE_EMOJI
                continue
            customs += 1
            animated, name, emoji_id = found.groups()
            assert (name, int(emoji_id), animated == "a") in emojis
    assert customs > 1000
    animated_seen = {
        match.group(1)
        for event in events(world, spec, 500)
        for match in CUSTOM_EMOJI.finditer(event.content)
    }
    assert animated_seen == {"", "a"}

    plain = World(seed=7, guild_count=20, emojis_per_guild=0)
    for event in events(plain, spec, 500):
        assert event.content.removeprefix("!jumbo ") in UNICODE_EMOJI


def test_removed_guilds_get_no_traffic_new_ones_do_and_an_empty_world_gets_none() -> None:
    for distribution in ("uniform", "skewed"):
        world = World(seed=8, guild_count=10)
        plan = TrafficPlan(world, TrafficSpec(distribution=distribution))
        removed = world.guild_ids[:5]
        for guild_id in removed:
            world.remove_guild(guild_id)
        added = world.add_guild()
        drawn = [plan.next_event() for _ in range(2000)]
        seen = {event.guild_id for event in drawn if event is not None}
        assert not seen & set(removed)
        assert added in seen
        for guild_id in list(world.guild_ids):
            world.remove_guild(guild_id)
        assert plan.next_event() is None
    assert TrafficPlan(World(seed=1, guild_count=0), TrafficSpec()).next_event() is None
    silent = World(seed=1, guild_count=5, members_per_guild=0)
    assert TrafficPlan(silent, TrafficSpec()).next_event() is None


# -- the spec --------------------------------------------------------------------------------------


def test_spec_defaults_and_round_trip() -> None:
    spec = msgspec.json.decode(b"{}", type=TrafficSpec)
    assert spec == TrafficSpec()
    assert spec.rate == 100.0 and spec.duration is None and spec.count is None
    assert spec.mix == dict(DEFAULT_MIX)
    custom = TrafficSpec(rate=0, count=5, seed=3, distribution="skewed", mix={"message": 1})
    assert msgspec.json.decode(msgspec.json.encode(custom), type=TrafficSpec) == custom


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"rate": 1, "burst": 2}', "burst"),
        (b'{"rate": -1}', "$.rate"),
        (b'{"duration": 0}', "$.duration"),
        (b'{"count": 0}', "$.count"),
        (b'{"seed": "one"}', "$.seed"),
        (b'{"distribution": "zipf"}', "$.distribution"),
        (b'{"mix": {"message": 1, "typing": 1}}', "'typing'"),
        (b'{"mix": {"message": -1}}', "$.mix"),
        (b'{"mix": {"message": 0}}', "more than 0"),
        (b'{"mix": {}}', "more than 0"),
        (b'{"contents": {"haiku": 1}}', "'haiku'"),
        (b'{"contents": {"ping": 0, "math": 0}}', "more than 0"),
    ],
)
def test_bad_specs_are_rejected_with_a_clear_reason(raw: bytes, says: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=re.escape(says)):
        msgspec.json.decode(raw, type=TrafficSpec)


def test_specs_built_in_python_are_checked_too() -> None:
    with pytest.raises(ValueError, match="unknown mix key"):
        TrafficSpec(mix={"typing": 1.0})
    with pytest.raises(ValueError, match="rate"):
        TrafficSpec(rate=-5)
    with pytest.raises(ValueError, match="rate"):
        TrafficSpec(rate=float("inf"))
    with pytest.raises(ValueError, match="duration"):
        TrafficSpec(duration=0)


# -- the generator ---------------------------------------------------------------------------------


class Collector:
    """A session's outbox that keeps every frame."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def queue(self, frame: bytes) -> None:
        self.frames.append(frame)


def simulator(
    world: World, clock: Callable[[], float]
) -> tuple[TrafficGenerator, Collector, Stats]:
    """A generator wired to a real gateway and message log, with one session on shard 0 of 1."""
    stats = Stats()
    payloads = PayloadFactory(world)
    gateway = Gateway(SimulatorConfig(), world, payloads, stats)
    messages = MessageLog(world, payloads, gateway, stats, SnowflakeFactory())
    session = Session("traffic-test", 0, 1, ALL_INTENTS, 1000)
    collector = Collector()
    session.outbox = collector
    gateway.sessions.add(session)
    return TrafficGenerator(world, payloads, gateway, messages, clock), collector, stats


async def turns(count: int) -> None:
    """Let the loop turn ``count`` times. A run at rate 0 sends a batch a turn and waits on no
    timer: while it runs virtual time stands still, so a test moves it on in turns."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_counted_run_sends_exactly_that_many_dispatches() -> None:
    world = World(seed=1, guild_count=20)
    generator, collector, stats = simulator(world, virtual_clock())
    generator.start(TrafficSpec(rate=0, count=500, seed=2))
    await generator.wait(10)

    status = generator.status()
    assert status["running"] is False
    assert status["sent"] == 500
    assert status["error"] is None
    by_kind = status["by_kind"]
    assert isinstance(by_kind, dict)
    assert sum(by_kind.values()) == 500
    assert status["spec"] == msgspec.to_builtins(TrafficSpec(rate=0, count=500, seed=2))
    assert isinstance(status["elapsed"], float)

    assert len(collector.frames) == 500
    names: Counter[str] = Counter()
    seqs = []
    for frame in collector.frames:
        payload = msgspec.json.decode(frame)
        assert payload["op"] == 0
        names[payload["t"]] += 1
        seqs.append(payload["s"])
        data = payload["d"]
        assert int(data["guild_id"]) in world.guild_ids
        if payload["t"] == "MESSAGE_CREATE":
            assert data["content"], "all intents: content is there"
    assert names == {EVENT_NAMES[kind]: n for kind, n in by_kind.items() if n}
    assert seqs == list(range(1, 501))
    assert stats.user_messages == by_kind["message"]
    assert stats.interactions == by_kind["interaction"]


async def test_a_timed_run_sends_at_its_rate_and_stops_on_its_own() -> None:
    world = World(seed=1, guild_count=20)
    generator, collector, _ = simulator(world, virtual_clock())
    generator.start(TrafficSpec(rate=200, duration=0.3))
    assert generator.status()["running"] is True
    await advance(0.1)
    sent = generator.status()["sent"]
    assert isinstance(sent, int)
    assert 20 - 2 * 200 * TICK <= sent <= 20  # paced, a tick behind at most, never ahead
    await advance(0.19)
    assert generator.status()["running"] is True
    await generator.wait(10)
    status = generator.status()
    assert status["running"] is False
    elapsed = status["elapsed"]
    # It ends at the first tick with nothing left due: its last events' tick and one more.
    assert isinstance(elapsed, float) and 0.3 <= elapsed <= 0.3 + 2 * TICK
    assert status["sent"] in (59, 60)  # rate x duration, less a rounding
    assert len(collector.frames) == status["sent"]


async def test_one_run_at_a_time_stop_is_idempotent_and_a_new_run_starts_afresh() -> None:
    world = World(seed=1, guild_count=20)
    generator, _, _ = simulator(world, virtual_clock())
    await generator.stop()  # nothing running: nothing to do
    generator.start(TrafficSpec(rate=1000))
    with pytest.raises(RuntimeError, match="already running"):
        generator.start(TrafficSpec())
    with pytest.raises(TimeoutError):
        await generator.wait(0.05)
    await generator.stop()
    await generator.stop()
    first = generator.status()
    assert first["running"] is False
    assert isinstance(first["sent"], int) and first["sent"] > 0

    generator.start(TrafficSpec(rate=0, count=10))
    await generator.wait(10)
    assert generator.status()["sent"] == 10


def test_start_needs_a_running_loop() -> None:
    generator, _, _ = simulator(World(seed=1, guild_count=2), time.monotonic)
    with pytest.raises(RuntimeError):
        generator.start(TrafficSpec())
    assert generator.status() == {
        "running": False,
        "sent": 0,
        "by_kind": {},
        "spec": None,
        "elapsed": 0.0,
        "error": None,
    }


async def test_guilds_removed_mid_run_are_skipped_and_an_empty_world_idles() -> None:
    world = World(seed=1, guild_count=40)
    generator, collector, _ = simulator(world, virtual_clock())
    generator.start(TrafficSpec(rate=0, count=5_000))
    await turns(2)
    removed = set(world.guild_ids[:20])
    for guild_id in removed:
        world.remove_guild(guild_id)
    before = len(collector.frames)
    await turns(2)
    assert len(collector.frames) > before
    for frame in collector.frames[before:]:
        assert int(msgspec.json.decode(frame)["d"]["guild_id"]) not in removed
    for guild_id in list(world.guild_ids):
        world.remove_guild(guild_id)
    idle = generator.status()
    # An idle run waits a tick at a time, which lets virtual time pass (one that spun instead
    # would hold it still, and this would not return).
    await advance(1.0)
    assert generator.status()["running"] is True and generator.status()["error"] is None
    assert generator.status()["sent"] == idle["sent"]
    added = world.add_guild()
    await generator.wait(10)  # traffic resumes in the new guild at the next tick
    assert generator.status()["sent"] == 5_000
    assert generator.status()["error"] is None
    sent = idle["sent"]
    assert isinstance(sent, int)
    for frame in collector.frames[sent:]:
        assert int(msgspec.json.decode(frame)["d"]["guild_id"]) == added
