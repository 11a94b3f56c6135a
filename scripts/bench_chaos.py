"""Chaos benchmark: ``!ping`` traffic through a fault every few seconds, and what became of every
message: answered once, lost, answered twice, and how soon a worker that serves again answers.

The sharder runs as a user runs it (``python -m sharder start --simulate``, the reference bot,
4 workers on 8 shards, one identify bucket with Discord's 5 s window, strict simulator). Pings
go at ``--rate`` per second to every channel of every guild in turn. Every ``--fault-every``
seconds one fault hits the next worker, the kinds in rotation:

- ``kill``: ``kill -9`` of the worker's process;
- ``stop``: SIGSTOP of the worker's process (the master finds it hung and kills it);
- ``restart``: ``python -m sharder restart N``;
- ``drop``: the simulator drops the TCP connections of the worker's shards (they RESUME);
- ``reconnect``: the simulator asks the worker's shards to reconnect (op 7 RECONNECT);
- ``invalid_session``: the simulator ends the sessions of the worker's shards (op 9, not
  resumable: they IDENTIFY again).

A worker serves again when the status shows all its shards ready in a new process (kill, stop,
restart) and the simulator has seen each of them RESUME or IDENTIFY since the fault. After the
traffic and up to ``--drain`` seconds for the last answers, each message counts as answered
once, lost (never answered) or double (answered more than once). Every message that reached a
session counts, resumable or not, connected or not, as Discord keeps a dropped session's events
for its RESUME; only one sent while its shard had no session at all (between an invalidated
session and the next IDENTIFY), which Discord would never deliver, is left out: the simulator's
session list, read just before and just after each message, tells which those are. Send and
reply times are the messages' snowflakes (the simulator's clock).

Targets: 0 double replies, 0 lost, and for each fault a first reply no later than 2 s after its
worker serves again.

    python scripts/bench_chaos.py [--minutes 5] [--fault-every 20] [--rate 20]
    python scripts/bench_chaos.py --minutes 1 --fault-every 10     # a shorter run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeGuard, get_args

import aiohttp
import psutil
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_routing import LAUNCHED, launch_master, stop_master, wait_ready  # noqa: E402
from sharder.control import ControlError, call  # noqa: E402
from simulator.world import CHANNEL_BASE, DISCORD_EPOCH_MS, guild_of  # noqa: E402

FaultKind = Literal["kill", "stop", "restart", "drop", "reconnect", "invalid_session"]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
PROCESS_FAULTS = frozenset({"kill", "stop", "restart"})
# How a message met its shard's sessions: one session was there before and after it ("live");
# none was, either side ("none"); or a session began or ended while it was sent ("edge").
Reach = Literal["live", "none", "edge"]

CHANNELS_PER_GUILD = 3
POLL_INTERVAL = 0.05  # seconds between status reads while a worker recovers
TAIL = 3.0  # seconds of traffic after the last fault's worker serves again
SETTLE = 3.0  # seconds to wait for late (double) replies once everything is answered
SHOWN = 10  # lost or double messages listed by id
CLI_TIMEOUT = 30.0
CONFIG = """
log_level = "WARNING"
[sharding]
shards = {shards}
workers = {workers}
[compute]
workers = 1
[simulator]
guilds = {guilds}
channels_per_guild = {channels}
max_concurrency = {max_concurrency}
identify_window = {identify_window}
strict = true
seed = {seed}
"""


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    workers: int = 4
    shards: int = 8
    guilds: int = 96
    rate: float = 20.0  # !ping per second
    seconds: float = 300.0  # of traffic with faults
    fault_every: float = 20.0  # seconds; the first comes half an interval in
    kinds: tuple[FaultKind, ...] = FAULT_KINDS  # in rotation
    max_concurrency: int = 1
    identify_window: float = 5.0  # Discord's
    drain: float = 30.0  # seconds allowed for the last answers
    recovery_timeout: float = 90.0  # a worker not serving again by then: the fault failed
    target_first_reply_s: float = 2.0
    seed: int = 1

    def config(self) -> str:
        return CONFIG.format(
            shards=self.shards,
            workers=self.workers,
            guilds=self.guilds,
            channels=CHANNELS_PER_GUILD,
            max_concurrency=self.max_concurrency,
            identify_window=self.identify_window,
            seed=self.seed,
        )


@dataclass(slots=True)
class Sent:
    id: int
    channel_id: int
    shard: int
    worker: int
    sent_at: float  # unix seconds: the message's snowflake
    reach: Reach


@dataclass(slots=True)
class Fault:
    number: int
    kind: FaultKind
    worker: int
    shards: list[int]
    at: float  # unix seconds, when it was injected
    detail: str = ""
    error: str | None = None  # the injection failed: why
    serving_at: float | None = None  # when the worker served again; None: not within timeout
    first_reply_at: float | None = None
    first_reply_delay: float | None = None  # after serving again (or after its message came)
    old_pid: int | None = None  # the worker's process when the fault came
    reconnects_before: int = 0  # sessions the simulator had started or resumed by then


@dataclass(slots=True)
class ChaosReport:
    options: ChaosOptions
    started_at: float  # unix seconds, the first message
    traffic_s: float
    drain_s: float
    messages: list[Sent]
    replies: dict[int, list[float]]  # message id -> unix times of the bot's replies to it
    faults: list[Fault]
    stats: dict[str, Any] = field(default_factory=dict)  # the simulator's, at the end

    def answers(self, message: Sent) -> int:
        return len(self.replies.get(message.id, ()))

    @property
    def counted(self) -> list[Sent]:
        """Messages that reached a session: all but those sent while their shard had none (an
        answered message reached one whatever the session list said)."""
        return [m for m in self.messages if m.reach == "live" or self.answers(m)]

    @property
    def excluded(self) -> list[Sent]:
        return [m for m in self.messages if m.reach != "live" and not self.answers(m)]

    @property
    def lost(self) -> list[Sent]:
        return [m for m in self.counted if not self.answers(m)]

    @property
    def doubles(self) -> list[Sent]:
        return [m for m in self.messages if self.answers(m) > 1]

    @property
    def answered_once(self) -> int:
        return sum(1 for m in self.messages if self.answers(m) == 1)

    @property
    def latencies(self) -> list[float]:
        return sorted(min(self.replies[m.id]) - m.sent_at for m in self.messages if self.answers(m))

    @property
    def worst_first_reply(self) -> Fault | None:
        """The fault whose worker took longest to answer once serving again (never serving
        again or never answering counts as longest)."""
        if not self.faults:
            return None

        def delay(fault: Fault) -> float:
            return fault.first_reply_delay if fault.first_reply_delay is not None else float("inf")

        return max(self.faults, key=delay)

    def targets(self) -> list[tuple[str, str, bool]]:
        """Each target: its name, the figure measured, whether it is met."""
        worst = self.worst_first_reply
        limit = self.options.target_first_reply_s
        if worst is None:
            figure, met = "no faults", False
        elif worst.first_reply_delay is None:
            figure, met = f"fault {worst.number} ({worst.kind}): {why_unmeasured(worst)}", False
        else:
            figure = f"{worst.first_reply_delay:.2f} s"
            met = worst.first_reply_delay <= limit
        return [
            ("0 double replies", str(len(self.doubles)), not self.doubles),
            ("0 lost", str(len(self.lost)), not self.lost),
            (f"first reply <= {limit:g} s after serving again", figure, met),
        ]

    @property
    def met(self) -> bool:
        return all(met for _, _, met in self.targets())


def why_unmeasured(fault: Fault) -> str:
    if fault.error is not None:
        return f"not injected ({fault.error})"
    if fault.serving_at is None:
        return "the worker did not serve again"
    return "no reply after it served again"


def snowflake_time(snowflake: int) -> float:
    return ((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# -- the run -------------------------------------------------------------------------------------


class ChaosRun:
    """Traffic, faults and their bookkeeping against one running sharder."""

    def __init__(
        self,
        options: ChaosOptions,
        directory: Path,
        status: dict[str, Any],
        http: aiohttp.ClientSession,
        master_pid: int,
        echo: Callable[[str], None],
    ) -> None:
        self.options = options
        self.master_pid = master_pid
        self.directory = directory
        self.socket = directory / "sharder.sock"
        self.http = http
        self.echo = echo
        self.control_url = status["api_url"].removesuffix("/api/v10") + "/_sim"
        self.worker_of_shard = {shard["id"]: shard["worker"] for shard in status["shards"]}
        self.shards_of_worker: dict[int, list[int]] = {}
        for shard_id, worker_id in sorted(self.worker_of_shard.items()):
            self.shards_of_worker.setdefault(worker_id, []).append(shard_id)
        self.messages: list[Sent] = []
        self.faults: list[Fault] = []
        self.started_at = 0.0
        # Held while a message is sent between its two session reads, and while the simulator
        # ends sessions: an invalidation never falls inside a message's reads.
        self.sending = asyncio.Lock()
        self.stopped: list[psutil.Process] = []  # SIGSTOPped workers, continued at the end

    # -- talking to the simulator and the master ---------------------------------------------

    async def sim(self, method: str, path: str, body: object = None) -> Any:
        async with self.http.request(method, f"{self.control_url}{path}", json=body) as response:
            if response.status >= 300:
                raise ControlError(f"{method} {path}: {response.status} {await response.text()}")
            return await response.json()

    async def status(self) -> dict[str, Any] | None:
        """The master's status, or None if it does not answer now."""
        with contextlib.suppress(ControlError, OSError, TimeoutError):
            answer = await call(self.socket, {"command": "status"}, timeout=2)
            if answer.get("ok"):
                status: dict[str, Any] = answer["status"]
                return status
        return None

    async def sessions_of(self, shard_id: int) -> frozenset[str]:
        sessions = await self.sim("GET", "/sessions")
        return frozenset(
            session["session_id"]
            for session in sessions
            if session["shard_id"] == shard_id and session["shard_count"] == self.options.shards
        )

    async def reconnects(self) -> int:
        """Sessions the simulator has started or resumed so far."""
        stats = await self.sim("GET", "/stats")
        return int(stats["identifies"]) + int(stats["resumes"])

    def since(self, moment: float) -> float:
        return moment - self.started_at

    # -- traffic -----------------------------------------------------------------------------

    async def channels(self) -> list[int]:
        world = await self.sim("GET", "/world")
        channels = [
            guild | (CHANNEL_BASE + n)
            for guild in world["guild_ids"]
            for n in range(CHANNELS_PER_GUILD)
        ]
        random.Random(self.options.seed).shuffle(channels)
        return channels

    async def send(self, channels: list[int], stop: asyncio.Event) -> None:
        """``rate`` pings a second, round the channels, until ``stop``; behind schedule, the
        next goes at once."""
        interval = 1 / self.options.rate
        due = time.monotonic()
        count = 0
        while not stop.is_set():
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                if stop.is_set():
                    break
            due += interval
            channel = channels[count % len(channels)]
            count += 1
            try:
                await self.send_one(channel)
            except (ControlError, aiohttp.ClientError) as error:
                self.echo(f"  a message could not be sent: {error}")

    async def send_one(self, channel_id: int) -> None:
        shard_id = (guild_of(channel_id) >> 22) % self.options.shards
        async with self.sending:
            before = await self.sessions_of(shard_id)
            body = {"content": "!ping", "channel_id": channel_id}
            injected = await self.sim("POST", "/messages", body)
            try:
                after: frozenset[str] | None = await self.sessions_of(shard_id)
            except (ControlError, aiohttp.ClientError):
                after = None  # sent all the same: recorded, as if at a session's edge
        reach: Reach = "edge"
        if after is not None and before & after:
            reach = "live"
        elif after is not None and not before and not after:
            reach = "none"
        message_id = int(injected["id"])
        self.messages.append(
            Sent(
                message_id,
                channel_id,
                shard_id,
                self.worker_of_shard[shard_id],
                snowflake_time(message_id),
                reach,
            )
        )

    # -- faults ------------------------------------------------------------------------------

    async def inject_faults(self, until: float) -> None:
        """A fault every ``fault_every`` seconds (the first half an interval in) until
        ``until``, each on the next worker; the next waits until the last one's worker serves
        again, so each recovery is measured alone."""
        options = self.options
        number = 0
        while True:
            due = self.started_at + (number + 0.5) * options.fault_every
            if due >= until:
                return
            await asyncio.sleep(max(0.0, due - time.time()))
            kind = options.kinds[number % len(options.kinds)]
            worker = number % len(self.shards_of_worker)
            number += 1
            fault = await self.inject(number, kind, worker)
            self.faults.append(fault)
            late = fault.at - due
            shards = ",".join(map(str, fault.shards))
            head = (
                f"[{self.since(fault.at):6.1f} s] fault {number} {kind}: worker {worker} "
                f"(shards {shards}{fault.detail})"
            )
            if late > 1:
                head += f", {late:.1f} s late: the previous recovery ran long"
            if fault.error is not None:
                self.echo(f"{head}: not injected: {fault.error}")
                continue
            await self.await_serving(fault)
            if fault.serving_at is None:
                self.echo(f"{head}: NOT serving again within {options.recovery_timeout:g} s")
            else:
                self.echo(f"{head}: serving again after {fault.serving_at - fault.at:.2f} s")

    async def inject(self, number: int, kind: FaultKind, worker: int) -> Fault:
        shards = self.shards_of_worker[worker]
        fault = Fault(number, kind, worker, shards, at=time.time())
        try:
            status = await self.status()
            if status is None:
                raise ControlError("the master does not answer")
            pid = status["workers"][worker]["pid"]
            if kind in PROCESS_FAULTS:
                fault.detail = f", pid {pid}"
            fault.old_pid = pid
            fault.reconnects_before = await self.reconnects()
            fault.at = time.time()
            await self.apply(kind, worker, shards, pid)
        except (ControlError, aiohttp.ClientError, OSError, psutil.Error) as error:
            fault.error = str(error)
        return fault

    async def apply(self, kind: FaultKind, worker: int, shards: list[int], pid: int | None) -> None:
        if kind == "restart":
            await self.restart_command(worker)
        elif kind in PROCESS_FAULTS:
            if pid is None:
                raise ControlError(f"worker {worker} has no process")
            process = self.descendant(pid)
            if kind == "kill":
                process.send_signal(signal.SIGKILL)
            else:
                process.suspend()  # SIGSTOP
                self.stopped.append(process)
        elif kind == "invalid_session":
            async with self.sending:
                for shard_id in shards:
                    await self.sim(
                        "POST", f"/shards/{shard_id}/invalid-session", {"resumable": False}
                    )
        else:  # drop, reconnect: routes of the same names
            for shard_id in shards:
                await self.sim("POST", f"/shards/{shard_id}/{kind}")

    def descendant(self, pid: int) -> psutil.Process:
        """The process ``pid``, checked to be one the master started (none other is touched)."""
        process = psutil.Process(pid)
        master = psutil.Process(self.master_pid)
        if process not in master.children(recursive=True):
            raise psutil.Error(f"pid {pid} is not a process of the master")
        return process

    async def restart_command(self, worker: int) -> None:
        """``python -m sharder restart WORKER``, as a user types it."""
        command = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sharder", "restart", str(worker), "--socket", str(self.socket),
            cwd=self.directory,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        try:
            output, _ = await asyncio.wait_for(command.communicate(), CLI_TIMEOUT)
        except TimeoutError:
            command.kill()
            await command.wait()
            raise ControlError(f"sharder restart did not return within {CLI_TIMEOUT:g} s") from None
        if command.returncode != 0:
            raise ControlError(f"sharder restart exited {command.returncode}: {output.decode()}")

    async def await_serving(self, fault: Fault) -> None:
        """Wait until the fault's worker serves again: all its shards ready (in a new process
        after a process fault) and as many sessions started or resumed since the fault."""
        deadline = fault.at + self.options.recovery_timeout
        needed = fault.reconnects_before + len(fault.shards)
        while time.time() < deadline:
            status = await self.status()
            checked_at = time.time()
            if status is not None and self.serving(fault, status):
                with contextlib.suppress(ControlError, aiohttp.ClientError):
                    if await self.reconnects() >= needed:
                        fault.serving_at = checked_at
                        break
            await asyncio.sleep(POLL_INTERVAL)
        self.continue_stopped()

    def serving(self, fault: Fault, status: dict[str, Any]) -> bool:
        pid = status["workers"][fault.worker]["pid"]
        if fault.kind in PROCESS_FAULTS and pid in (None, fault.old_pid):
            return False
        return all(
            shard["state"] == "ready" for shard in status["shards"] if shard["id"] in fault.shards
        )

    def continue_stopped(self) -> None:
        """SIGCONT to a stopped worker the master has not killed (yet)."""
        for process in self.stopped:
            with contextlib.suppress(psutil.Error):
                if process.status() == psutil.STATUS_STOPPED:
                    process.resume()

    # -- the outcome ---------------------------------------------------------------------------

    async def replies(self) -> dict[int, list[float]]:
        """The bot's replies to each message sent, by the time they were posted."""
        sent = {message.id for message in self.messages}
        replies: dict[int, list[float]] = {}
        for message in await self.sim("GET", "/messages"):
            reference = message["message_reference"] or {}
            referenced = int(reference.get("message_id") or 0)
            if referenced in sent:
                replies.setdefault(referenced, []).append(snowflake_time(int(message["id"])))
        return {message_id: sorted(times) for message_id, times in replies.items()}

    async def drain(self) -> tuple[dict[int, list[float]], float]:
        """The replies once every message that reached a live session is answered, or after
        ``drain`` seconds; a few seconds more either way for late second answers."""
        began = time.monotonic()
        waiting = [message.id for message in self.messages if message.reach == "live"]
        while True:
            replies = await self.replies()
            waiting = [message_id for message_id in waiting if message_id not in replies]
            if not waiting or time.monotonic() - began > self.options.drain:
                break
            await asyncio.sleep(1.0)
        drained = time.monotonic() - began
        await asyncio.sleep(SETTLE)
        return await self.replies(), drained

    def first_replies(self, replies: dict[int, list[float]]) -> None:
        """For each fault: the first answer its worker posted once serving again, and how long
        after it began serving (or after the message came, if that was later)."""
        for fault in self.faults:
            if fault.serving_at is None:
                continue
            serving_at = fault.serving_at
            answered = [
                (replies[message.id][0], message)
                for message in self.messages
                if message.worker == fault.worker
                and message.id in replies
                and replies[message.id][0] >= serving_at
            ]
            if not answered:
                continue
            first_at, message = min(answered, key=lambda pair: pair[0])
            fault.first_reply_at = first_at
            fault.first_reply_delay = first_at - max(serving_at, message.sent_at)


async def chaos(
    options: ChaosOptions,
    directory: Path,
    master_pid: int,
    status: dict[str, Any],
    echo: Callable[[str], None],
) -> ChaosReport:
    """Traffic and faults against the ready sharder in ``directory``; what became of it."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
        run = ChaosRun(options, directory, status, http, master_pid, echo)
        channels = await run.channels()
        stop = asyncio.Event()
        run.started_at = time.time()
        sender = asyncio.create_task(run.send(channels, stop))
        try:
            await run.inject_faults(run.started_at + options.seconds)
            last = max(
                [run.started_at + options.seconds]
                + [fault.serving_at + TAIL for fault in run.faults if fault.serving_at]
            )
            await asyncio.sleep(max(0.0, last - time.time()))
            stop.set()
            await sender
        finally:
            stop.set()
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            run.continue_stopped()
        traffic_s = time.time() - run.started_at
        echo(f"[{traffic_s:6.1f} s] traffic stopped: {len(run.messages)} sent; draining")
        replies, drained = await run.drain()
        run.first_replies(replies)
        stats = await run.sim("GET", "/stats")
        return ChaosReport(
            options, run.started_at, traffic_s, drained, run.messages, replies, run.faults, stats
        )


async def run_chaos(
    options: ChaosOptions, echo: Callable[[str], None] = print, keep: bool = False
) -> ChaosReport:
    """Start the sharder in a temporary directory, run ``chaos`` against it, stop everything.

    Every process the master started is gone at the end, whatever happened (Ctrl-C too); the
    directory with the master's log is kept if the run failed or ``keep`` is set.
    """
    directory = Path(tempfile.mkdtemp(prefix="chaos-", dir="/tmp"))  # short: socket paths
    (directory / "sharder.toml").write_text(options.config())
    log = directory / "sharder.log"
    on_sigterm = signal.getsignal(signal.SIGTERM)  # launch_master sets its own until the end
    process = launch_master(directory, log)
    descendants = Descendants(process.pid)
    failed = True
    try:
        status = await wait_ready(directory / "sharder.sock", time.perf_counter())
        descendants.remember()
        echo(f"sharder ready in {directory}; master pid {process.pid}")
        report = await chaos(options, directory, process.pid, status, echo)
        failed = False
        return report
    finally:
        descendants.remember()
        stop_master(process)
        descendants.kill()
        LAUNCHED.remove(process)
        if on_sigterm is not None:
            signal.signal(signal.SIGTERM, on_sigterm)
        if failed:
            echo(f"run failed; the master's log: {log}\n{tail(log)}")
        elif not keep:
            shutil.rmtree(directory, ignore_errors=True)


class Descendants:
    """The master's processes, so that none outlives the run."""

    def __init__(self, master_pid: int) -> None:
        self.master_pid = master_pid
        self.known: dict[int, psutil.Process] = {}

    def remember(self) -> None:
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.master_pid).children(recursive=True)
            self.known.update((child.pid, child) for child in children)

    def kill(self) -> None:
        for child in self.known.values():
            with contextlib.suppress(psutil.Error):
                child.kill()  # psutil checks it is still the same process, not a reused pid


def tail(path: Path, size: int = 4000) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-size:]
    return ""


# -- the report ------------------------------------------------------------------------------------


def summary(report: ChaosReport) -> Iterator[str]:
    options = report.options
    messages, counted = report.messages, report.counted
    excluded = report.excluded
    edge = sum(1 for message in excluded if message.reach == "edge")
    yield (
        f"traffic: {len(messages)} !ping in {report.traffic_s:.1f} s "
        f"({len(messages) / max(report.traffic_s, 1e-9):.1f}/s); drained in {report.drain_s:.1f} s"
    )
    yield (
        f"reached a live session: {len(counted)}; left out: {len(excluded)} sent while their "
        f"shard had no session ({edge} of them as a session began or ended)"
    )
    doubles = report.doubles
    extra = sum(report.answers(message) - 1 for message in doubles)
    yield (
        f"answered once: {report.answered_once}; lost: {len(report.lost)}; "
        f"doubles: {len(doubles)} ({extra} extra replies)"
    )
    latencies = report.latencies
    if latencies:
        yield (
            f"reply latency: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms"
        )
    kinds = Counter(fault.kind for fault in report.faults if fault.error is None)
    failed = sum(1 for fault in report.faults if fault.error is not None)
    yield (
        "faults injected: "
        + ", ".join(f"{kind} {kinds[kind]}" for kind in options.kinds)
        + (f" ({failed} could not be injected)" if failed else "")
    )
    for fault in report.faults:
        yield "  " + fault_line(report, fault)
    worst = report.worst_first_reply
    if worst is not None:
        figure = (
            f"{worst.first_reply_delay:.2f} s"
            if worst.first_reply_delay is not None
            else why_unmeasured(worst)
        )
        where = f"fault {worst.number}, {worst.kind}, worker {worst.worker}"
        yield f"worst first reply after serving again: {figure} ({where})"
    for label, listed in (("lost", report.lost), ("double", doubles)):
        for message in listed[:SHOWN]:
            yield f"  {label}: {message_line(report, message)}"
        if len(listed) > SHOWN:
            yield f"  ... {len(listed) - SHOWN} more {label}"
    stats = report.stats
    if stats:
        yield (
            f"simulator: identifies {stats['identifies']}, resumes {stats['resumes']} "
            f"(refused {stats['resumes_refused']}), events replayed {stats['events_replayed']}, "
            f"REST 429 {stats['rest_429']}, identify violations {stats['identify_violations']}"
        )
    yield "targets:"
    for name, figure, met in report.targets():
        yield f"  {name:<42} {figure:>10}  {'met' if met else 'MISSED'}"


def fault_line(report: ChaosReport, fault: Fault) -> str:
    head = (
        f"{fault.number:>2} at {fault.at - report.started_at:6.1f} s  {fault.kind:<15} "
        f"worker {fault.worker}"
    )
    if fault.error is not None:
        return f"{head}: not injected ({fault.error})"
    if fault.serving_at is None:
        return f"{head}: did not serve again"
    serving = f"serving again after {fault.serving_at - fault.at:5.2f} s"
    if fault.first_reply_delay is None:
        return f"{head}: {serving}, no reply after"
    return f"{head}: {serving}, first reply {fault.first_reply_delay:5.2f} s after"


def message_line(report: ChaosReport, message: Sent) -> str:
    sent = message.sent_at - report.started_at
    replies = report.replies.get(message.id, [])
    after = ", ".join(f"{reply - message.sent_at:.2f}" for reply in replies)
    before = [fault for fault in report.faults if fault.at <= message.sent_at]
    nearest = (
        f"; {message.sent_at - before[-1].at:.1f} s after fault {before[-1].number} "
        f"({before[-1].kind}, worker {before[-1].worker})"
        if before
        else ""
    )
    answered = f", answered after {after} s" if replies else ""
    return (
        f"message {message.id} at {sent:.1f} s, shard {message.shard} (worker {message.worker})"
        f"{answered}{nearest}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="of traffic with faults")
    parser.add_argument("--fault-every", type=float, default=20.0, help="seconds between faults")
    parser.add_argument("--rate", type=float, default=20.0, help="!ping per second")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--guilds", type=int, default=96)
    parser.add_argument("--max-concurrency", type=int, default=1)
    parser.add_argument("--identify-window", type=float, default=5.0, help="seconds")
    parser.add_argument("--drain", type=float, default=30.0, help="seconds for the last answers")
    parser.add_argument(
        "--kinds",
        type=fault_kinds,
        default=FAULT_KINDS,
        help=f"faults in rotation, comma-separated, of: {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the run's directory and log")
    args = parser.parse_args()
    if args.rate <= 0 or args.minutes <= 0 or args.fault_every <= 0:
        parser.error("--rate, --minutes and --fault-every must be positive")
    options = ChaosOptions(
        workers=args.workers,
        shards=args.shards,
        guilds=args.guilds,
        rate=args.rate,
        seconds=args.minutes * 60,
        fault_every=args.fault_every,
        kinds=args.kinds,
        max_concurrency=args.max_concurrency,
        identify_window=args.identify_window,
        drain=args.drain,
        seed=args.seed,
    )
    print(
        f"bench_chaos: {os.cpu_count()} cores; {options.workers} workers, {options.shards} "
        f"shards, max_concurrency {options.max_concurrency}, identify window "
        f"{options.identify_window:g} s; {options.rate:g} !ping/s for {options.seconds:g} s, "
        f"a fault every {options.fault_every:g} s ({', '.join(options.kinds)})",
        flush=True,
    )
    report = uvloop.run(run_chaos(options, echo, args.keep))
    for line in summary(report):
        print(line)
    return 0


def fault_kinds(text: str) -> tuple[FaultKind, ...]:
    kinds = tuple(word.strip() for word in text.split(",") if word.strip())
    unknown = [kind for kind in kinds if not is_kind(kind)]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"unknown fault kinds: {', '.join(unknown) or 'none'}")
    return tuple(kind for kind in kinds if is_kind(kind))


def is_kind(name: str) -> TypeGuard[FaultKind]:
    return name in FAULT_KINDS


def echo(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # run_chaos has stopped every process by now
        sys.exit(130)
