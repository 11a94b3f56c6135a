"""Rolling restart benchmark: ``restart --rolling`` of every worker under ``!ping`` traffic.

The sharder runs as a user runs it (``python -m sharder start --simulate``, the reference bot,
``--workers`` workers on ``--shards`` shards, strict simulator with one identify bucket and
Discord's 5 s window, a world of ``--guilds`` guilds of ``--members`` members). Pings go at
``--rate`` per second to every guild in turn for ``--settle`` seconds, then through the roll,
then ``--settle`` seconds more. Printed per run, and the median of ``--runs``: how long the roll
took and each phase of each worker's step (loading the new process beside the old one, handing
the sessions over, resuming them), the pings lost or answered twice, the new sessions started
(IDENTIFYs: the target is none), and the reply latency before the roll against during it, with
the worst wait and the longest silence.

    python scripts/bench_rolling.py [--runs 3] [--guilds 2000] [--members 25] [--shards 8]
                                    [--workers 4] [--rate 20] [--settle 5]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_routing import launch_master, stop_master, wait_ready  # noqa: E402
from scripts.ping_traffic import PingTraffic, ReplyReport  # noqa: E402
from sharder.control import call  # noqa: E402
from simulator.child import call_control  # noqa: E402

ROLL_TIMEOUT = 600.0
CONFIG = """
log_level = "WARNING"
[sharding]
shards = {shards}
workers = {workers}
[supervisor]
heartbeat_interval = 0.5
[simulator]
guilds = {guilds}
members_per_guild = {members}
max_concurrency = 1
strict = true
rest_route_limit = 1000
"""


@dataclass(frozen=True)
class RollRun:
    took: float
    phases: dict[str, list[float]]  # per phase, each worker's time in it
    before: ReplyReport
    during: ReplyReport
    identifies: int
    resumes: int


async def follow(socket: Path) -> tuple[float, dict[str, list[float]]]:
    """Poll the roll until it ends: its duration and the time each worker spent per phase."""
    spent: defaultdict[tuple[int, str], float] = defaultdict(float)
    last = time.monotonic()
    deadline = last + ROLL_TIMEOUT
    while time.monotonic() < deadline:
        roll = (await call(socket, {"command": "status"}))["status"]["roll"]
        now = time.monotonic()
        if roll["state"] != "rolling":
            if roll["state"] != "done":
                raise RuntimeError(f"the roll {roll['state']}: {roll['reason']}")
            phases: defaultdict[str, list[float]] = defaultdict(list)
            for (_, phase), seconds in sorted(spent.items()):
                phases[phase].append(seconds)
            return float(roll["took_s"]), dict(phases)
        if roll["worker"] is not None:
            spent[roll["worker"], roll["phase"]] += now - last
        last = now
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the roll did not end within {ROLL_TIMEOUT:g} s")


async def one_run(args: argparse.Namespace) -> RollRun:
    directory = Path(tempfile.mkdtemp(prefix="rolling-", dir="/tmp"))
    (directory / "sharder.toml").write_text(
        CONFIG.format(
            shards=args.shards, workers=args.workers, guilds=args.guilds, members=args.members
        )
    )
    socket = directory / "sharder.sock"
    process = launch_master(directory, directory / "sharder.log")
    try:
        status = await wait_ready(socket, time.perf_counter())
        control = status["api_url"].removesuffix("/api/v10") + "/_sim"
        traffic = PingTraffic(control, args.rate)
        stop = asyncio.Event()
        pinging = asyncio.create_task(traffic.run(stop))
        await asyncio.sleep(args.settle)
        before_stats = await call_control(control, "GET", "/stats")
        roll_started = time.time()  # the simulator's snowflakes are of the wall clock
        answer = await call(socket, {"command": "restart", "rolling": True})
        if not answer["ok"]:
            raise RuntimeError(answer["error"])
        took, phases = await follow(socket)
        roll_ended = roll_started + took
        await asyncio.sleep(args.settle)
        stop.set()
        await pinging
        after_stats = await call_control(control, "GET", "/stats")
        replies = await traffic.replies()
        first = traffic.sent[0][1]
        return RollRun(
            took=took,
            phases=phases,
            before=ReplyReport.of(traffic.sent, replies, first, roll_started),
            during=ReplyReport.of(traffic.sent, replies, roll_started, roll_ended),
            identifies=after_stats["identifies"] - before_stats["identifies"],
            resumes=after_stats["resumes"] - before_stats["resumes"],
        )
    except BaseException:
        sys.stderr.write((directory / "sharder.log").read_text()[-4000:])
        raise
    finally:
        stop_master(process)
        shutil.rmtree(directory, ignore_errors=True)


def describe(run: RollRun) -> list[str]:
    phases = ", ".join(
        f"{phase} {statistics.median(times):.2f} s (max {max(times):.2f})"
        for phase, times in run.phases.items()
    )
    return [
        f"roll {run.took:.1f} s; per worker: {phases}",
        f"  before: {run.before.line()}",
        f"  during: {run.during.line()}",
        f"  sessions: {run.identifies} identified, {run.resumes} resumed",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guilds", type=int, default=2000)
    parser.add_argument("--members", type=int, default=25)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    args = parser.parse_args()
    print(
        f"rolling restart of {args.workers} workers ({args.shards} shards, {args.guilds} guilds "
        f"x {args.members} members) under {args.rate:g} pings/s, {args.runs} runs"
    )
    runs = []
    for number in range(1, args.runs + 1):
        run = uvloop.run(one_run(args))
        runs.append(run)
        print(f"run {number}: " + "\n".join(describe(run)), flush=True)
    median = statistics.median
    lost = sum(run.during.lost + run.before.lost for run in runs)
    doubles = sum(run.during.doubles + run.before.doubles for run in runs)
    identifies = sum(run.identifies for run in runs)
    print(
        f"median of {len(runs)}: roll {median(run.took for run in runs):.1f} s; during it reply "
        f"p99 {median(run.during.p99 for run in runs) * 1000:.0f} ms (before "
        f"{median(run.before.p99 for run in runs) * 1000:.0f} ms), worst "
        f"{median(run.during.worst for run in runs) * 1000:.0f} ms, longest silence "
        f"{median(run.during.silence for run in runs) * 1000:.0f} ms"
    )
    print(
        f"all runs: {lost} lost, {doubles} answered twice, {identifies} identifies "
        f"(targets: 0, 0, 0)"
    )
    return 0 if lost == doubles == identifies == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
