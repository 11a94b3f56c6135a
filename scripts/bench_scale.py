"""Scale benchmark: one simulated Discord world brought up three ways in the same run, one way
after another: ``one`` plain hikari process with every shard, ``split`` into N plain hikari
processes with a contiguous 1/N of the shards each (the sharder's own split, done naively), and
the ``sharder`` with N workers.

Printed for each way: seconds from launch until every guild of the world is in the bot's cache,
the CPU seconds (user + system) the way's processes had spent by that moment, their USS after a
2 s settle, per process and in total, and restarts. Then the medians of ``--runs`` runs per way
and the targets: sharder/split ready time <= 1.10, sharder USS - split USS <= 100 MiB, master
USS <= 30 MiB. Missed targets are reported, not an error: the exit code is non-zero only when
the benchmark itself fails.

Every way of every run gets a fresh simulator with the same (default) seed, so all of them see
the same world, and the way's processes are all killed when it ends. The plain processes are
``scripts/plain_hikari.py``; the sharder is ``python -m sharder start --no-status`` pointed at
that simulator (``[discord] api_url``, its token in DISCORD_TOKEN), not ``--simulate``, so that
it brings no simulator of its own into its process tree.

    python scripts/bench_scale.py [--guilds 10000] [--members-per-guild 50] [--shards 16]
        [--processes 4] [--runs 3] [--ways one,split,sharder] [--timeout 300]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocol.routing import contiguous_assignment  # noqa: E402
from scripts.bench_routing import LAUNCHED, stop_launched  # noqa: E402
from sharder.control import ControlError, call  # noqa: E402
from simulator.child import SimulatorEndpoints, call_control, start_simulator, stop_process  # noqa: E402

PLAIN_BOT = ROOT / "scripts" / "plain_hikari.py"
WAYS = ("one", "split", "sharder")
SETTLE_S = 2.0
STATUS_INTERVAL = 0.1
STATUS_TIMEOUT = 2.0
STOP_TIMEOUT = 30.0
LOG_TAIL = 5
MIB = 2**20
READY_RATIO_TARGET = 1.10
EXTRA_USS_TARGET = 100.0
MASTER_USS_TARGET = 30.0
CONFIG = """
log_level = "WARNING"
[discord]
api_url = "{api_url}"
[sharding]
shards = {shards}
workers = {workers}
[compute]
workers = 1
[control]
socket = "{directory}/sharder.sock"
[state]
path = "{directory}/sharder-state.db"
"""


@dataclass(frozen=True)
class World:
    guilds: int
    members_per_guild: int
    channels_per_guild: int
    shards: int
    max_concurrency: int
    identify_window: float

    def simulator_flags(self) -> list[str]:
        return [
            "--guilds", str(self.guilds),
            "--members-per-guild", str(self.members_per_guild),
            "--channels-per-guild", str(self.channels_per_guild),
            "--shards", str(self.shards),
            "--max-concurrency", str(self.max_concurrency),
            "--identify-window", str(self.identify_window),
            "--log-level", "ERROR",  # its warnings are counted in /stats, shown per way
        ]  # fmt: skip


@dataclass
class Outcome:
    """One way's figures; ``ready_s`` None: it never got there, and ``note`` says why."""

    ready_s: float | None = None
    cpu_s: float | None = None
    uss_mib: dict[str, float] = field(default_factory=dict)  # by process role, in shown order
    cpu_by_role: dict[str, float] = field(default_factory=dict)  # CPU s to ready, by role
    total_mib: float | None = None
    restarts: int = 0
    identify_violations: int = 0  # IDENTIFYs inside their bucket's window, as the simulator saw
    note: str = ""


class WayFailed(Exception):
    """A way that did not get every guild ready; the restarts seen by then come along."""

    def __init__(self, why: str, restarts: int = 0) -> None:
        super().__init__(why)
        self.restarts = restarts


# -- processes ---------------------------------------------------------------------------------


def launch(
    command: list[str], log: Path, token: str, *, stdout: int | None = None
) -> subprocess.Popen[bytes]:
    """``command`` in its own session (our Ctrl-C is ours to handle, and killpg reaches all it
    starts), its output in ``log`` unless ``stdout`` says otherwise."""
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=log.parent,
            env={**os.environ, "PYTHONPATH": str(ROOT), "DISCORD_TOKEN": token},
            stdout=log_file if stdout is None else stdout,
            stderr=log_file,
            start_new_session=True,
        )
    LAUNCHED.append(process)
    return process


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL to its whole process group: nothing it started outlives the way."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    if process.stdout is not None:
        process.stdout.close()
    LAUNCHED.remove(process)


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants; empty once it is gone."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_seconds(processes: Iterable[psutil.Process]) -> float:
    """User and system CPU time the processes spent so far, summed."""
    total = 0.0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            spent = process.cpu_times()
            total += spent.user + spent.system
    return total


def uss_mib(processes: Iterable[psutil.Process]) -> float:
    """Memory the processes would give back if they ended (USS), summed."""
    total = 0
    for process in processes:
        with contextlib.suppress(psutil.Error):
            total += process.memory_full_info().uss
    return total / MIB


# -- the plain hikari ways ---------------------------------------------------------------------


def plain_way(
    world: World,
    sim: SimulatorEndpoints,
    guild_count: int,
    processes: int,
    timeout: float,
    directory: Path,
) -> Outcome:
    owners = contiguous_assignment(world.shards, processes)
    groups = [[shard for shard, owner in owners.items() if owner == n] for n in range(processes)]
    deadline = time.monotonic() + timeout
    launched_at = time.time()
    children: list[subprocess.Popen[bytes]] = []
    try:
        for n, group in enumerate(groups):
            command = [
                sys.executable, str(PLAIN_BOT), "--rest-url", sim.rest_url,
                "--shard-ids", ",".join(map(str, group)), "--shard-count", str(world.shards),
            ]  # fmt: skip
            log = directory / f"plain-{n}.log"
            children.append(launch(command, log, sim.token, stdout=subprocess.PIPE))
        lines = ready_lines(children, deadline, timeout)
        names = ["hikari"] if processes == 1 else [str(n) for n in range(processes)]
        cpu = {
            name: cpu_seconds(process_tree(child.pid))
            for name, child in zip(names, children, strict=True)
        }
        # Each process reads its shards' guild count from their READYs; together they must
        # cover the world, or "ready" would mean less than every guild.
        loaded = sum(int(line.split()[2]) for line in lines)
        if loaded != guild_count:
            raise WayFailed(f"the READYs listed {loaded} guilds; the world has {guild_count}")
        ready_at = max(float(line.split()[1]) for line in lines)
        time.sleep(SETTLE_S)
        trees = [process_tree(child.pid) for child in children]
        uss = {name: uss_mib(tree) for name, tree in zip(names, trees, strict=True)}
        return Outcome(ready_at - launched_at, sum(cpu.values()), uss, cpu, sum(uss.values()))
    finally:
        for child in children:
            stop_group(child)


def ready_lines(
    children: list[subprocess.Popen[bytes]], deadline: float, timeout: float
) -> list[str]:
    """The ``ready <time> <guilds>`` line of every plain process, in launch order."""
    output = {child.stdout.fileno(): b"" for child in children if child.stdout is not None}
    waiting = {fd: n for n, fd in enumerate(output)}
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WayFailed(f"not ready within {timeout:g} s: {len(waiting)} process(es) waiting")
        readable, _, _ = select.select(list(waiting), [], [], remaining)
        for fd in readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                code = children[waiting[fd]].wait(STOP_TIMEOUT)
                raise WayFailed(f"process {waiting[fd]} exited with {code} before it was ready")
            output[fd] += chunk
            if ready_line(output[fd]) is not None:
                del waiting[fd]
    return [ready_line(text) or "" for text in output.values()]


def ready_line(output: bytes) -> str | None:
    for line in output.decode(errors="replace").splitlines(keepends=True):
        if line.startswith("ready ") and line.endswith("\n"):
            return line.strip()
    return None


# -- the sharder -------------------------------------------------------------------------------


def sharder_way(
    world: World,
    sim: SimulatorEndpoints,
    guild_count: int,
    processes: int,
    timeout: float,
    directory: Path,
) -> Outcome:
    config = directory / "sharder.toml"
    socket = directory / "sharder.sock"
    config.write_text(
        CONFIG.format(
            api_url=sim.rest_url, shards=world.shards, workers=processes, directory=directory
        )
    )
    command = [
        sys.executable, "-m", "sharder", "start", "--no-status", "--config", str(config),
    ]  # fmt: skip
    launched_at = time.time()
    master = launch(command, directory / "sharder.log", sim.token)
    remembered: dict[int, psutil.Process] = {}
    try:
        ready_at = uvloop.run(wait_loaded(socket, master, guild_count, timeout))
        tree = process_tree(master.pid)
        cpu = by_role(master.pid, uvloop.run(status_of(socket)), tree, cpu_seconds)
        remembered.update((process.pid, process) for process in tree)
        time.sleep(SETTLE_S)
        # The status after the settle: its pids are those the USS is read from.
        status = uvloop.run(status_of(socket))
        tree = process_tree(master.pid)
        remembered.update((process.pid, process) for process in tree)
        uss = by_role(master.pid, status, tree, uss_mib)
        return Outcome(
            ready_at - launched_at,
            sum(cpu.values()),
            uss,
            cpu,
            sum(uss.values()),
            restarts_in(status),
        )
    finally:
        remembered.update((process.pid, process) for process in process_tree(master.pid))
        stop_group(master)
        for process in remembered.values():
            with contextlib.suppress(psutil.Error):
                process.kill()  # psutil checks it is still the same process, not a reused pid


async def status_of(socket: Path) -> dict[str, Any]:
    answer = await call(socket, {"command": "status"}, timeout=STATUS_TIMEOUT)
    if not answer.get("ok"):
        raise ControlError(f"status refused: {answer.get('error')}")
    status: dict[str, Any] = answer["status"]
    return status


async def wait_loaded(
    socket: Path, master: subprocess.Popen[bytes], guild_count: int, timeout: float
) -> float:
    """The wall-clock time of the first status with every guild of the world loaded.

    Answering these polls is part of the master's CPU figure: ten status calls a second, the
    price of seeing the moment within 100 ms.
    """
    deadline = time.monotonic() + timeout
    status: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        if master.poll() is not None:
            raise WayFailed(f"the master exited with {master.returncode}", restarts_in(status))
        with contextlib.suppress(ControlError, OSError, TimeoutError):
            status = await status_of(socket)
            if guilds_loaded(status) == guild_count:
                return time.time()
        await asyncio.sleep(STATUS_INTERVAL)
    loaded = guilds_loaded(status) if status is not None else 0
    raise WayFailed(
        f"not ready within {timeout:g} s: {loaded} of {guild_count} guilds loaded",
        restarts_in(status),
    )


def guilds_loaded(status: dict[str, Any]) -> int:
    # A status without the field (an older sharder) counts as nothing loaded: the way times
    # out rather than being called ready on the READYs' word alone.
    return sum(int(shard.get("guilds_loaded", 0)) for shard in status["shards"])


def restarts_in(status: dict[str, Any] | None) -> int:
    if status is None:
        return 0
    gate = status.get("rest_gate") or {}
    return (
        sum(int(worker["restarts"]) for worker in status["workers"])
        + sum(int(worker["restarts"]) for worker in status.get("compute", []))
        + int(gate.get("restarts", 0))
    )


def by_role(
    master_pid: int,
    status: dict[str, Any],
    tree: list[psutil.Process],
    measure: Callable[[Iterable[psutil.Process]], float],
) -> dict[str, float]:
    """``measure`` by role: master, each worker, the REST gate, compute, then any other child by
    name."""
    roles = {master_pid: "master"}
    for worker in status["workers"]:
        if worker["pid"] is not None:
            roles[worker["pid"]] = f"worker {worker['id']}"
    gate = status.get("rest_gate")
    if gate is not None and gate["pid"] is not None:
        roles[gate["pid"]] = "rest_gate"
    compute = status.get("compute", [])
    for worker in compute:
        if worker["pid"] is not None:
            roles[worker["pid"]] = "compute" if len(compute) == 1 else f"compute {worker['id']}"
    by_pid = {process.pid: process for process in tree}
    figures = {role: measure([by_pid[pid]]) for pid, role in roles.items() if pid in by_pid}
    for process in tree:
        if process.pid not in roles:
            role = other_role(process)
            figures[role] = figures.get(role, 0.0) + measure([process])
    return figures


def other_role(process: psutil.Process) -> str:
    """A child the status does not list, named by what it runs (multiprocessing's helpers)."""
    try:
        command = " ".join(process.cmdline())
        name = process.name()
    except psutil.Error:
        return "gone"
    for helper in ("resource_tracker", "forkserver"):
        if helper in command:
            return helper
    return name


# -- one way, one run --------------------------------------------------------------------------


def run_way(way: str, world: World, processes: int, timeout: float) -> Outcome:
    directory = Path(tempfile.mkdtemp(prefix="scale-", dir="/tmp"))  # short: a socket path
    sim, simulator = start_simulator(*world.simulator_flags(), new_session=True)
    LAUNCHED.append(simulator)
    try:
        world_facts = uvloop.run(call_control(sim.control_url, "GET", "/world"))
        guild_count = len(world_facts["guild_ids"])
        try:
            if way == "sharder":
                outcome = sharder_way(world, sim, guild_count, processes, timeout, directory)
            else:
                count = 1 if way == "one" else processes
                outcome = plain_way(world, sim, guild_count, count, timeout, directory)
        except WayFailed as failure:
            show_logs(way, directory)
            outcome = Outcome(restarts=failure.restarts, note=str(failure))
        stats = uvloop.run(call_control(sim.control_url, "GET", "/stats"))
        outcome.identify_violations = int(stats["identify_violations"])
        return outcome
    finally:
        stop_process(simulator)
        LAUNCHED.remove(simulator)
        shutil.rmtree(directory, ignore_errors=True)


def show_logs(way: str, directory: Path) -> None:
    for log in sorted(directory.glob("*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        for line in lines[-LOG_TAIL:]:
            print(f"  {way} {log.name}: {line}", file=sys.stderr)


# -- reporting ---------------------------------------------------------------------------------


def median_outcome(outcomes: list[Outcome]) -> Outcome:
    """Medians over the runs that got ready; restarts summed over all runs."""
    restarts = sum(outcome.restarts for outcome in outcomes)
    ready = [outcome for outcome in outcomes if outcome.ready_s is not None]
    if not ready:
        return Outcome(restarts=restarts, note=f"never ready in {len(outcomes)} run(s)")
    roles = dict.fromkeys(role for outcome in ready for role in outcome.uss_mib)
    cpu_roles = dict.fromkeys(role for outcome in ready for role in outcome.cpu_by_role)
    partly = len(ready) < len(outcomes)
    return Outcome(
        ready_s=statistics.median(outcome.ready_s or 0.0 for outcome in ready),
        cpu_s=statistics.median(outcome.cpu_s or 0.0 for outcome in ready),
        uss_mib={
            role: statistics.median(o.uss_mib[role] for o in ready if role in o.uss_mib)
            for role in roles
        },
        cpu_by_role={
            role: statistics.median(o.cpu_by_role[role] for o in ready if role in o.cpu_by_role)
            for role in cpu_roles
        },
        total_mib=statistics.median(outcome.total_mib or 0.0 for outcome in ready),
        restarts=restarts,
        identify_violations=sum(outcome.identify_violations for outcome in outcomes),
        note=f"ready in {len(ready)} of {len(outcomes)} runs" if partly else "",
    )


def print_table(outcomes: dict[str, Outcome]) -> None:
    rows = [
        [
            "way",
            "ready s",
            "CPU s",
            "USS MiB total",
            "per process (USS MiB / CPU s)",
            "restarts",
            "identify violations",
        ]
    ]
    for way, outcome in outcomes.items():
        if outcome.ready_s is None:
            counts = [str(outcome.restarts), str(outcome.identify_violations)]
            rows.append([way, "never", "-", "-", "-", *counts])
            continue
        figures = {
            role: f"{mib:.0f}/{outcome.cpu_by_role.get(role, 0.0):.1f}"
            for role, mib in outcome.uss_mib.items()
        }
        if way == "split":  # the processes are alike: their figures say enough
            per_process = " ".join(figures.values())
        else:
            per_process = ", ".join(f"{role} {figure}" for role, figure in figures.items())
        rows.append(
            [
                way,
                f"{outcome.ready_s:.2f}",
                f"{outcome.cpu_s or 0.0:.2f}",
                f"{outcome.total_mib or 0.0:.0f}",
                per_process,
                str(outcome.restarts),
                str(outcome.identify_violations),
            ]
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    numeric = {1, 2, 3, 5, 6}
    for row in rows:
        cells = [
            cell.rjust(width) if column in numeric else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
    for way, outcome in outcomes.items():
        if outcome.note:
            print(f"  {way}: {outcome.note}")


def print_targets(medians: dict[str, Outcome]) -> None:
    sharder, split = medians.get("sharder"), medians.get("split")
    both = (
        sharder is not None
        and split is not None
        and sharder.ready_s is not None
        and split.ready_s is not None
    )
    if not both or sharder is None or split is None:
        print("sharder/split ready time = n/a (needs the sharder and split ways, both ready)")
        print("sharder USS - split USS = n/a (needs the sharder and split ways, both ready)")
    else:
        ratio = (sharder.ready_s or 0.0) / (split.ready_s or 1.0)
        extra = (sharder.total_mib or 0.0) - (split.total_mib or 0.0)
        print(
            f"sharder/split ready time = {ratio:.2f} (target <= {READY_RATIO_TARGET:.2f})  "
            f"{verdict(ratio <= READY_RATIO_TARGET)}"
        )
        print(
            f"sharder USS - split USS = {extra:.0f} MiB (target <= {EXTRA_USS_TARGET:.0f})  "
            f"{verdict(extra <= EXTRA_USS_TARGET)}"
        )
    master = sharder.uss_mib.get("master") if sharder is not None else None
    if master is None:
        print("master USS = n/a (needs the sharder way, ready)")
    else:
        print(
            f"master USS = {master:.0f} MiB (target <= {MASTER_USS_TARGET:.0f})  "
            f"{verdict(master <= MASTER_USS_TARGET)}"
        )


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guilds", type=int, default=10000)
    parser.add_argument("--members-per-guild", type=int, default=50)
    parser.add_argument("--channels-per-guild", type=int, default=5)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument("--processes", type=int, default=4, help="plain processes and workers")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--ways", default=",".join(WAYS), help="comma-separated, of " + ", ".join(WAYS)
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per way to ready")
    parser.add_argument("--identify-window", type=float, default=5.0)
    args = parser.parse_args()
    ways = [way for way in args.ways.split(",") if way]
    unknown = sorted(set(ways) - set(WAYS))
    if unknown or not ways:
        parser.error(
            f"--ways: unknown {', '.join(unknown) or '(none given)'}; of {', '.join(WAYS)}"
        )
    if not 1 <= args.processes <= args.shards:
        parser.error("--processes must be between 1 and --shards: every process needs a shard")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    world = World(
        guilds=args.guilds,
        members_per_guild=args.members_per_guild,
        channels_per_guild=args.channels_per_guild,
        shards=args.shards,
        max_concurrency=args.max_concurrency,
        identify_window=args.identify_window,
    )
    # Our children run in sessions of their own; a benchmark stopped by SIGTERM (a timeout)
    # would otherwise leave them running.
    signal.signal(signal.SIGTERM, stop_launched)
    print(
        f"bench_scale: {world.guilds} guilds x {world.members_per_guild} members x "
        f"{world.channels_per_guild} channels, {world.shards} shards, max_concurrency "
        f"{world.max_concurrency}, identify window {world.identify_window:g} s; "
        f"{args.processes} processes; {args.runs} run(s); machine: {os.cpu_count()} cores",
        flush=True,
    )
    results: dict[str, list[Outcome]] = {way: [] for way in ways}
    for run in range(1, args.runs + 1):
        outcomes: dict[str, Outcome] = {}
        for way in ways:  # one after another: at once, they would share the cores
            print(f"run {run}: {way}...", file=sys.stderr, flush=True)
            outcomes[way] = run_way(way, world, args.processes, args.timeout)
            results[way].append(outcomes[way])
        print(
            f"\nrun {run}: {world.guilds} guilds x {world.members_per_guild} members, "
            f"{world.shards} shards, {args.processes} processes"
        )
        print_table(outcomes)
        sys.stdout.flush()
    medians = {way: median_outcome(outcomes) for way, outcomes in results.items()}
    print(f"\nmedian of {args.runs} run(s) (restarts and identify violations: summed)")
    print_table(medians)
    print_targets(medians)
    return 0


if __name__ == "__main__":
    sys.exit(main())
