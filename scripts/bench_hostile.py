"""Hostile-input benchmark: what a running sharder answers to input meant to hurt it, how long
each answer takes, and how much memory the process that handled it grew meanwhile.

One sharder runs as a user runs it (``python -m sharder start --simulate``; 4 shards on 2
workers, 2 compute workers, 16 simulated guilds, the reference bot) and gets, one at a time:

1. ``!math`` expressions from a Discord user (messages injected into the simulator), built to
   cost unbounded time or memory; the answer is the bot's reply, its time the gap between the
   two messages' snowflakes (the simulator's clock);
2. requests to the REST gate's port from a local process that does not know the per-run
   secret: the old path without it, a guessed one, dot segments, and 1,000 guesses in a row.
   The gate's ``invalid_10min`` and ``refused`` counters are read before and after: strangers
   must not count toward the limits the bot's own requests are held to;
3. control-socket requests from a local user: a JSON line nested 5,000 deep, and ``state_set``
   with keys that are no guild or user id; then ``!ping`` shows the sharder still serves;
4. 100 hostile ``!math`` in a burst; then the compute pool's state (every worker ready, none
   failed), how many got a reply and the p50 / max reply time.

Each input's row gives the peak RSS growth of the process(es) that handled it (sampled every
10 ms while it is handled; the largest growth of any one): the compute workers for math, the
REST gate for gate requests, the master for the control socket. The sharder's own log
(WARNING and above) is printed at the end. The exit code is 0 unless the benchmark itself
breaks: what the sharder answers is the finding, not a failure.

    python scripts/bench_hostile.py
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import shutil
import statistics
import struct
import sys
import tempfile
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import msgspec
import psutil
import uvloop
import yarl

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gate.limits import RestLimits  # noqa: E402
from protocol.deadlines import DeadlineWheel  # noqa: E402
from protocol.framing import FrameDecoder  # noqa: E402
from protocol.messages import deadline_in  # noqa: E402
from scripts.bench_routing import (  # noqa: E402
    launch_master,
    stop_master,
    wait_ready,
)
from sharder.control import call  # noqa: E402

CONFIG = """
log_level = "WARNING"
[sharding]
shards = 4
workers = 2
[compute]
workers = 2
[simulator]
guilds = 16
"""
# (what the table shows, what is sent): most inputs show as themselves.
MATH_INPUTS = (
    ("round(1, -10**20)", "round(1, -10**20)"),
    ("round(1,-10**7)", "round(1,-10**7)"),
    ("(-1)**0.5", "(-1)**0.5"),
    ("log(2,1)", "log(2,1)"),
    ("0.5**10**9999", "0.5**10**9999"),
    ("2**((-1)**0.5)", "2**((-1)**0.5)"),
    ("9**9**9**9", "9**9**9**9"),
    ("factorial(10**6)", "factorial(10**6)"),
    ('"(" * 200 + "1" + ")" * 200', "(" * 200 + "1" + ")" * 200),
)
BURST_EXTRA = "9**9**9"
BURST = 100
BURST_LANES = 4  # injections in flight: as fast as the simulator takes them, on 2 cores
BURST_TIMEOUT = 120.0
REPLY_TIMEOUT = 30.0  # one !math: the pool's task deadline (10 s) and then some
POLL = 0.025  # between looks for a reply; each look costs the simulator a request
SAMPLE = 0.01
STRANGERS = 1000
STATE_KEYS = (
    ("guild_config", "abc"),
    ("guild_config", ""),
    ("guild_config", "-5"),
    ("guild_config", "1_000"),
    ("user_data", "1" * 65),
)
SETTLE_TIMEOUT = 15.0
TOKEN_MARKER = "bench-hostile-token-that-must-stay-in-the-master"
ONE_TIME_TOKENS = 100_000  # interaction callbacks, each with a token of its own
BUSY = "refused busy (queue full)"
WIDTHS = (27, 40, 70, 9, 8)
MIB = 2**20


# -- measuring -----------------------------------------------------------------------------


class PeakRss:
    """The peak RSS growth of some processes while a ``with`` block runs, in MiB.

    A thread samples every 10 ms, so that a short-lived allocation (a huge integer built and
    dropped) is seen; a ``/proc`` read costs microseconds. A process that ends
    meanwhile (a compute worker killed over a limit) keeps the samples taken before it ended.
    """

    def __init__(self, processes: list[psutil.Process]) -> None:
        self.processes = processes
        self.before: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_done, daemon=True)

    def __enter__(self) -> PeakRss:
        self._sample()
        self.before = dict(self.peak)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._done.set()
        self._thread.join()
        self._sample()

    @property
    def growth_mib(self) -> float:
        grown = [self.peak[pid] - rss for pid, rss in self.before.items()]
        return max(grown, default=0) / MIB

    def _sample_until_done(self) -> None:
        while not self._done.wait(SAMPLE):
            self._sample()

    def _sample(self) -> None:
        for process in self.processes:
            with contextlib.suppress(psutil.Error):
                rss = process.memory_info().rss
                self.peak[process.pid] = max(rss, self.peak.get(process.pid, 0))


@dataclass
class Row:
    kind: str
    shown: str
    answer: str
    ms: float
    mib: float


@dataclass
class Findings:
    """What went wrong, for the summary; empty when the sharder took everything in stride."""

    problems: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)

    def print_row(self, row: Row) -> None:
        self.rows.append(row)
        kind, shown, answer, ms, mib = WIDTHS
        print(
            f"{shortened(row.kind, kind):<{kind}} {shortened(row.shown, shown):<{shown}} "
            f"{shortened(row.answer, answer):<{answer}} {row.ms:>{ms},.1f} {row.mib:>{mib}.1f}",
            flush=True,
        )


def shortened(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line: a reply or an error may span several
    return text if len(text) <= width else text[: width - 1] + "…"


def outcome(reply: str) -> str:
    if " are busy " in reply:
        return BUSY
    return "refused" if reply.startswith("cannot compute:") else "computed"


def snowflake_ms(snowflake: int) -> int:
    return snowflake >> 22


# -- the simulator, as a Discord user ------------------------------------------------------


class Simulator:
    def __init__(self, http: aiohttp.ClientSession, control_url: str) -> None:
        self.http = http
        self.control_url = control_url

    async def say(self, content: str, **where: int) -> dict[str, Any]:
        """A message from a member drawn at random, in a guild and channel drawn at random,
        unless ``where`` names the ``guild_id`` or ``author_id``."""
        async with self.http.post(
            f"{self.control_url}/messages", json={"content": content, **where}
        ) as response:
            response.raise_for_status()
            injected: dict[str, Any] = await response.json()
            return injected

    async def replies(self, after: int, channel_id: int | None = None) -> dict[int, dict[str, Any]]:
        """The bot's messages since ``after`` that reply to a message, by the id replied to."""
        query = f"after={after}" + (f"&channel_id={channel_id}" if channel_id is not None else "")
        async with self.http.get(f"{self.control_url}/messages?{query}") as response:
            response.raise_for_status()
            messages: list[dict[str, Any]] = await response.json()
        return {
            int(message["message_reference"]["message_id"]): message
            for message in messages
            if (message["message_reference"] or {}).get("message_id") is not None
        }

    async def guild(self) -> dict[str, Any]:
        """A guild of the world: its ``id``, ``owner_id``, ``member_ids`` and ``moderator_ids``."""
        async with self.http.get(f"{self.control_url}/world") as response:
            guild_id = (await response.json())["guild_ids"][0]
        async with self.http.get(f"{self.control_url}/guilds/{guild_id}") as response:
            facts: dict[str, Any] = await response.json()
            return facts

    async def ask(self, content: str, timeout: float, **where: int) -> tuple[str | None, float]:
        """The bot's reply to ``content`` (None if none came within ``timeout``) and the ms from
        the message to the reply; ``where``: its ``guild_id`` and ``author_id``."""
        injected = await self.say(content, **where)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = await self.replies(injected["id"], injected["channel_id"])
            if injected["id"] in found:
                reply = found[injected["id"]]
                ms = snowflake_ms(reply["id"]) - snowflake_ms(injected["id"])
                return str(reply["content"]), float(ms)
            await asyncio.sleep(POLL)
        return None, timeout * 1000


# -- the sharder ---------------------------------------------------------------------------


async def status_of(socket: Path) -> dict[str, Any]:
    answer = await call(socket, {"command": "status"})
    if not answer.get("ok"):
        raise RuntimeError(f"status refused: {answer}")
    status: dict[str, Any] = answer["status"]
    return status


def processes_of(pids: list[int | None]) -> list[psutil.Process]:
    found = []
    for pid in pids:
        if pid is not None:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(pid))
    return found


def compute_processes(status: dict[str, Any]) -> list[psutil.Process]:
    return processes_of([worker["pid"] for worker in status["compute"]])


def restarts(status: dict[str, Any]) -> int:
    return sum(int(worker["restarts"]) for worker in status["compute"])


# -- the classes of input ------------------------------------------------------------------


async def math_inputs(simulator: Simulator, socket: Path, findings: Findings) -> None:
    kind = "math (Discord user)"
    for shown, expression in MATH_INPUTS:
        # Fresh each time: a compute worker killed over a limit comes back as a new process.
        before = await status_of(socket)
        with PeakRss(compute_processes(before)) as peak:
            answer, ms = await simulator.ask(f"!math {expression}", REPLY_TIMEOUT)
        after = await status_of(socket)
        if answer is None:
            answer = f"no reply within {REPLY_TIMEOUT:g} s"
            findings.problems.append(f"!math {shown}: no reply")
        if (restarted := restarts(after) - restarts(before)) > 0:
            answer = f"[{restarted} compute restart(s)] {answer}"
        findings.print_row(Row(kind, shown, answer, ms, peak.growth_mib))


async def gate_inputs(http: aiohttp.ClientSession, socket: Path, findings: Findings) -> None:
    kind = "REST gate (local process)"
    status = await status_of(socket)
    gate = status["rest_gate"]
    if gate is None:
        raise RuntimeError("the sharder runs without a REST gate")
    base = gate["url"].rstrip("/")
    counters = {name: gate[name] for name in ("invalid_10min", "refused")}
    processes = processes_of([gate["pid"]])
    probes: list[tuple[str, str, yarl.URL]] = [
        ("POST /w/0/api/v10/channels/1/messages", "POST",
         yarl.URL(f"{base}/w/0/api/v10/channels/1/messages")),
        ("GET /guessed/w/0/api/v10/users/@me", "GET",
         yarl.URL(f"{base}/guessed/w/0/api/v10/users/@me")),
        # encoded=True: yarl would otherwise resolve the dots before they are sent.
        ("GET /anything/w/0/api/v10/../../admin", "GET",
         yarl.URL(f"{base}/anything/w/0/api/v10/../../admin", encoded=True)),
    ]  # fmt: skip
    for shown, method, url in probes:
        started = time.perf_counter()
        with PeakRss(processes) as peak:
            body = {"content": "hello"} if method == "POST" else None
            async with http.request(method, url, json=body) as response:
                answer = f"{response.status} {await response.text()}"
        ms = (time.perf_counter() - started) * 1000
        if response.status != 403:
            findings.problems.append(f"gate {shown}: {response.status}, not 403")
        findings.print_row(Row(kind, shown, answer, ms, peak.growth_mib))

    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    with PeakRss(processes) as peak:
        for _ in range(STRANGERS):
            # A guess shaped like the real secret (token_urlsafe(24)): what brute force sends.
            guess = f"{base}/{secrets.token_urlsafe(24)}/w/0/api/v10/users/@me"
            async with http.get(guess) as response:
                await response.read()
                statuses[response.status] += 1
    ms = (time.perf_counter() - started) * 1000
    counts = ", ".join(f"{code} x{count}" for code, count in sorted(statuses.items()))
    findings.print_row(
        Row(kind, f"{STRANGERS:,} x GET /{{guess}}/w/0/…/users/@me", counts, ms, peak.growth_mib)
    )
    if set(statuses) != {403}:
        findings.problems.append(f"gate guesses: {counts}")

    # The gate reports its counters on each heartbeat (1 s): wait for one after the requests.
    await asyncio.sleep(2.5)
    gate = (await status_of(socket))["rest_gate"]
    changes = [f"{name} {was} -> {gate[name]}" for name, was in counters.items()]
    unchanged = all(gate[name] == was for name, was in counters.items())
    print(
        f"  gate counters after {STRANGERS + len(probes):,} stranger requests: "
        f"{', '.join(changes)}: {'unchanged' if unchanged else 'CHANGED'}"
    )
    if not unchanged:
        findings.problems.append(f"gate counters changed: {', '.join(changes)}")


async def exchange(socket: Path, raw: bytes, timeout: float = 5.0) -> str:
    """``raw`` sent as is on the control socket; the answer line as text."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_unix_connection(os.fspath(socket))
        try:
            writer.write(raw)
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
    return line.decode(errors="replace").strip() or "(connection closed, no answer)"


async def control_inputs(
    simulator: Simulator, socket: Path, master: psutil.Process, findings: Findings
) -> None:
    kind = "control socket (local user)"
    requests: list[tuple[str, bytes]] = [('b"[" * 5000 + b"\\n"', b"[" * 5000 + b"\n")]
    for scope, key in STATE_KEYS:
        request = {"command": "state_set", "scope": scope, "key": key, "fields": {"x": 1}}
        shown_key = json.dumps(key) if len(key) < 10 else f'"{key[0]}" * {len(key)}'
        requests.append(
            (f"state_set {scope} key {shown_key}", json.dumps(request).encode() + b"\n")
        )
    for shown, raw in requests:
        started = time.perf_counter()
        with PeakRss([master]) as peak:
            answer = await exchange(socket, raw)
        ms = (time.perf_counter() - started) * 1000
        if '"ok":false' not in answer.replace(" ", ""):
            findings.problems.append(f"control {shown}: accepted ({answer})")
        findings.print_row(Row(kind, shown, answer, ms, peak.growth_mib))

    pong, ms = await simulator.ask("!ping", REPLY_TIMEOUT)
    if pong is None:
        findings.problems.append("!ping after the control inputs: no reply")
    print(f"  !ping after the control socket inputs: {pong or 'NO REPLY'} ({ms:,.0f} ms)")


async def member_inputs(simulator: Simulator, findings: Findings) -> None:
    kind = "reference bot (member)"
    guild = await simulator.guild()
    member = next(
        user
        for user in guild["member_ids"][1:]
        if user != guild["owner_id"] and user not in guild["moderator_ids"]
    )
    for content in ("!prefix ?", "!grant 1 ban"):
        answer, ms = await simulator.ask(
            content, REPLY_TIMEOUT, guild_id=guild["id"], author_id=member
        )
        if answer is None or not answer.startswith("only members who may manage"):
            findings.problems.append(f"{content} by a plain member: {answer}")
        findings.print_row(Row(kind, f"{content} (no Manage Server)", answer or "none", ms, 0.0))


def secret_inputs(status: dict[str, Any], findings: Findings) -> None:
    kind = "secrets (compute input)"
    children = [("compute", worker["pid"]) for worker in status["compute"]]
    children.append(("rest_gate", status["rest_gate"]["pid"]))
    for role, pid in children:
        started = time.perf_counter()
        environment = psutil.Process(pid).environ()
        ms = (time.perf_counter() - started) * 1000
        leaked = TOKEN_MARKER in environment.values()
        if leaked:
            findings.problems.append(f"{role} {pid} has the bot token in its environment")
        answer = "the token IS in its environment" if leaked else "no token in its environment"
        findings.print_row(Row(kind, f"{role} pid {pid}: read its environment", answer, ms, 0.0))


def in_process(kind: str, shown: str, attempt: Any, findings: Findings) -> None:
    """``attempt()`` timed, with the peak of Python's allocations while it ran."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        answer = str(attempt())
    except Exception as error:
        answer = f"{type(error).__name__}: {error}"
    ms = (time.perf_counter() - started) * 1000
    peak = tracemalloc.get_traced_memory()[1] / MIB
    tracemalloc.stop()
    findings.print_row(Row(kind, shown, answer, ms, peak))


def one_time_tokens() -> str:
    """What the REST gate keeps after the bot answers 100,000 interactions, once swept."""

    async def answer_all() -> str:
        limits = RestLimits(1_000_000, margin=0.0)
        for n in range(ONE_TIME_TOKENS):
            admission = await limits.admit(0, "POST", f"/interactions/{n + 1}/tok{n}/callback")
            limits.settle(admission, 204, {"X-RateLimit-Limit": "1", "X-RateLimit-Remaining": "0",
                                           "X-RateLimit-Reset-After": "0.001"})  # fmt: skip
        await asyncio.sleep(0.01)
        limits.sweep(time.monotonic())
        return f"{limits.bucket_count} buckets and {len(limits.routes)} routes kept"

    return asyncio.run(answer_all())


def code_inputs(findings: Findings) -> None:
    """Bot code and the bot's own traffic, in this process: what the wire and the gate's tables
    do with them."""
    nested = b"\x91" * 100_000 + b"\x01"  # a payload 100,000 arrays deep: 100 KB
    frame = msgspec.msgpack.encode(
        {"kind": "COMMAND_EXEC", "nonce": 1, "deadline": 5.0, "guild_id": 1, "name": "x",
         "payload": msgspec.Raw(nested)}
    )  # fmt: skip
    framed = struct.pack(">II", len(frame), zlib.crc32(frame)) + frame
    wheel: DeadlineWheel[int] = DeadlineWheel(lambda key: None)
    kind = "bot code (wire, deadlines)"
    in_process(kind, "ctx.request(..., timeout=math.inf)", lambda: deadline_in(math.inf), findings)
    in_process(kind, "a deadline of NaN into the wheel", lambda: wheel.add(1, math.nan), findings)
    in_process(kind, "a frame nested 100,000 deep", lambda: list(FrameDecoder().feed(framed)),
               findings)  # fmt: skip
    in_process("REST gate (bot traffic)", "100,000 interactions, a token each",
               one_time_tokens, findings)  # fmt: skip


async def burst(simulator: Simulator, socket: Path, findings: Findings) -> None:
    expressions = [expression for _, expression in MATH_INPUTS] + [BURST_EXTRA]
    contents = [f"!math {expressions[n % len(expressions)]}" for n in range(BURST)]
    before = await status_of(socket)
    lanes = asyncio.Semaphore(BURST_LANES)

    async def inject(content: str) -> dict[str, Any]:
        async with lanes:
            return await simulator.say(content)

    started = time.perf_counter()
    with PeakRss(compute_processes(before)) as peak:
        injected = await asyncio.gather(*(inject(content) for content in contents))
        ids = {int(message["id"]) for message in injected}
        first = min(ids) - 1
        replies: dict[int, dict[str, Any]] = {}
        while time.perf_counter() - started < BURST_TIMEOUT:
            found = await simulator.replies(first)
            replies = {message_id: found[message_id] for message_id in ids & found.keys()}
            if len(replies) == len(ids):
                break
            await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    times = sorted(
        snowflake_ms(reply["id"]) - snowflake_ms(message_id)
        for message_id, reply in replies.items()
    )
    outcomes = Counter(outcome(reply["content"]) for reply in replies.values())
    print(
        f"  {len(replies)}/{BURST} replied in {elapsed:.1f} s; reply time "
        + (f"p50 {statistics.median(times):,.0f} ms, max {times[-1]:,.0f} ms" if times else "n/a")
        + f"; compute workers' peak RSS growth {peak.growth_mib:.1f} MiB"
    )
    print("  replies: " + ", ".join(f"{kind} {n}" for kind, n in outcomes.most_common()))
    busy = next((r["content"] for r in replies.values() if outcome(r["content"]) == BUSY), None)
    if busy is not None:
        print(f"  e.g. {shortened(busy, 120)}")
    if len(replies) < BURST:
        findings.problems.append(f"100 hostile !math: {BURST - len(replies)} without a reply")

    # A worker killed over a limit just now is still coming back: give it the time to.
    waited = time.perf_counter()
    status = await status_of(socket)
    while time.perf_counter() - waited < SETTLE_TIMEOUT:
        states = [worker["state"] for worker in status["compute"]]
        if all(state == "ready" for state in states) or "failed" in states:
            break
        await asyncio.sleep(0.1)
        status = await status_of(socket)
    settled = time.perf_counter() - waited
    for worker in status["compute"]:
        exit_note = f", last exit: {worker['last_exit']}" if worker["last_exit"] else ""
        print(
            f"  compute worker {worker['id']}: {worker['state']}, "
            f"restarts {worker['restarts']}{exit_note}"
        )
    pool = status["compute_pool"]
    print(
        f"  compute pool: done {pool['done']}, timed out {pool['timed_out']}, "
        f"busy {pool['busy']}, lost {pool['lost']}; "
        f"restarts during the burst: {restarts(status) - restarts(before)}"
    )
    wrong = [
        f"worker {worker['id']} {worker['state']}"
        for worker in status["compute"]
        if worker["state"] != "ready"
    ]
    verdict = ", ".join(wrong) if wrong else "all ready, none failed"
    waited_note = f" (after {settled:.1f} s for restarts to finish)" if settled > 0.5 else ""
    print(f"compute pool after {BURST} hostile !math: {verdict}{waited_note}")
    if wrong:
        findings.problems.append(f"compute pool: {verdict}")


# -- the run -------------------------------------------------------------------------------


async def run(directory: Path, findings: Findings) -> None:
    socket = directory / "sharder.sock"
    started = time.perf_counter()
    process = launch_master(directory, directory / "sharder.log")
    descendants: dict[int, psutil.Process] = {}
    try:
        status = await wait_ready(socket, started)
        print(f"sharder ready in {time.perf_counter() - started:.1f} s (pid {process.pid})")
        control_url = status["api_url"].removesuffix("/api/v10") + "/_sim"
        master = psutil.Process(process.pid)
        descendants.update((child.pid, child) for child in master.children(recursive=True))
        kind, shown, answer, ms, mib = WIDTHS
        print(
            f"{'class':<{kind}} {'input':<{shown}} {'answer':<{answer}} "
            f"{'ms':>{ms}} {'+MiB':>{mib}}"
        )
        async with aiohttp.ClientSession() as http:
            simulator = Simulator(http, control_url)
            await math_inputs(simulator, socket, findings)
            await gate_inputs(http, socket, findings)
            await control_inputs(simulator, socket, master, findings)
            await member_inputs(simulator, findings)
            secret_inputs(await status_of(socket), findings)
            print(f"100 hostile !math ({BURST_LANES} injections in flight):")
            await burst(simulator, socket, findings)
        with contextlib.suppress(psutil.Error):
            descendants.update((child.pid, child) for child in master.children(recursive=True))
    finally:
        stop_master(process)
        for child in descendants.values():
            with contextlib.suppress(psutil.Error):
                child.kill()  # psutil checks it is still the same process, not a reused pid


def print_log(directory: Path) -> None:
    lines = (directory / "sharder.log").read_text(errors="replace").splitlines()
    shown = [line for line in lines if line.strip()]
    print(f"sharder log (WARNING and above): {len(shown)} lines")
    for line in shown[:30]:
        print(f"  {shortened(line, 160)}")
    if len(shown) > 30:
        print(f"  … {len(shown) - 30} more")


def main() -> int:
    directory = Path(tempfile.mkdtemp(prefix="bench-", dir="/tmp"))  # short: socket paths
    (directory / "sharder.toml").write_text(CONFIG)
    findings = Findings()
    print(f"bench_hostile: {os.cpu_count()} cores, 4 shards on 2 workers, 2 compute workers")
    # As an operator sets it: the master must keep it from every child but the shard workers.
    os.environ["DISCORD_TOKEN"] = TOKEN_MARKER
    try:
        uvloop.run(run(directory, findings))
        print_log(directory)
        code_inputs(findings)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    worst = max(findings.rows, key=lambda row: row.mib)
    print(
        f"summary: {len(findings.rows)} hostile inputs and a burst of {BURST} !math; "
        + (
            "no problems found"
            if not findings.problems
            else f"{len(findings.problems)} problem(s): " + "; ".join(findings.problems)
        )
        + f"; largest RSS growth {worst.mib:.1f} MiB ({worst.kind}: {shortened(worst.shown, 40)})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
