"""The master's terminal output: the status table, and a display that keeps it current.

On a terminal, ``StatusDisplay`` redraws a live table (with a progress line while shards are
still connecting). Anywhere else (piped, under systemd, in tests) it writes plain lines instead:
one when a worker's state or restart count or the number of ready shards changes, and a summary
at most every ``summary_interval`` seconds, so a log stays readable and free of escape codes.
``status_table`` is also what ``sharder status`` prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from protocol.clock import Clock
from sharder.status import (
    ComputePoolStatus,
    ComputeStatus,
    SharderStatus,
    ShardStatus,
    WorkerStatus,
)

# Above this many shards the shards table lists only those that are not ready, after a count by
# state: a thousand ready rows say less than one line.
COMPACT_SHARDS = 32

STATE_STYLES = {
    "ready": "green",
    "running": "green",
    "starting": "yellow",
    "spawning": "yellow",
    "connecting": "yellow",
    "resuming": "yellow",
    "waiting_identify": "yellow",
    "stopping": "yellow",
    "busy": "yellow",
    "backoff": "red",
    "down": "red",
    "failed": "bold red",
    "stopped": "dim",
}

# The order states are counted in: the healthy first, then the way towards ready, then the broken.
SHARD_STATE_ORDER = ("ready", "resuming", "connecting", "waiting_identify", "starting", "down")


def shard_ranges(shard_ids: list[int]) -> str:
    """Shard ids as compact ranges: ``[0, 1, 2, 3]`` -> ``"0-3"``,
    ``[4, 6, 8, 9]`` -> ``"4,6,8-9"``, ``[]`` -> ``""``."""
    parts: list[str] = []
    ids = sorted(set(shard_ids))
    start = 0
    for index, shard_id in enumerate(ids):
        last = index + 1 == len(ids)
        if last or ids[index + 1] != shard_id + 1:
            first = ids[start]
            parts.append(str(first) if first == shard_id else f"{first}-{shard_id}")
            start = index + 1
    return ",".join(parts)


def _format_duration(seconds: float) -> str:
    """``3s``, ``2m 05s``, ``1h 02m``, ``3d 04h``: the two largest units."""
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _state_rank(state: str) -> int:
    return SHARD_STATE_ORDER.index(state) if state in SHARD_STATE_ORDER else len(SHARD_STATE_ORDER)


def _styled_state(state: str) -> Text:
    return Text(state, style=STATE_STYLES.get(state, ""))


def _optional(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _header(status: SharderStatus) -> Text:
    """One line: state, pid, uptime, shards ready, events/s, API, the dashboard and the
    simulation marker."""
    ready = status.ready_shards
    line = Text.assemble(
        ("sharder ", "bold"),
        _styled_state(status.state),
        f"  pid {status.pid}  up {_format_duration(status.uptime_s)}  shards ready ",
        (f"{ready}/{status.shard_count}", "green" if ready == status.shard_count else "yellow"),
        f"  {status.events_per_s:.1f} events/s  {status.api_url}",
    )
    if status.metrics_url is not None:
        line.append(f"  dashboard {status.metrics_url}/")
    if status.simulated:
        line.append("  simulated", style="bold magenta")
    return line


def _workers_table(workers: list[WorkerStatus]) -> Table:
    columns = ("worker", "pid", "state", "shards", "restarts", "RSS MiB", "loop lag ms", "ping ms")
    table = _process_table("workers", columns, left=("state", "shards"))
    for worker in workers:
        table.add_row(
            *_process_cells(worker.id, worker.pid, worker.state),
            shard_ranges(worker.shards),
            str(worker.restarts),
            f"{worker.rss_bytes / 2**20:.0f}" if worker.rss_bytes else "-",
            _optional(worker.loop_lag_ms, 1),
            _optional(worker.heartbeat_p99_ms, 1),
            worker.last_exit or "",
        )
    return table


def _process_table(title: str, columns: tuple[str, ...], left: tuple[str, ...]) -> Table:
    """A table of processes: ``columns`` (those in ``left`` left-aligned), then the last exit."""
    table = Table(title=title, title_justify="left", expand=False)
    for column in columns:
        table.add_column(column, justify="left" if column in left else "right")
    table.add_column("last exit")
    return table


def _process_cells(process_id: int, pid: int | None, state: str) -> tuple[str, str, Text]:
    return str(process_id), "-" if pid is None else str(pid), _styled_state(state)


def _compute_table(workers: list[ComputeStatus], pool: ComputePoolStatus) -> Table:
    title = (
        f"compute pool: {pool.queued}/{pool.queue_size} queued, {pool.done} done, "
        f"{pool.timed_out} timed out, {pool.busy} refused busy, {pool.lost} lost"
    )
    columns = ("compute", "pid", "state", "task", "done", "restarts", "RSS MiB")
    table = _process_table(title, columns, left=("state", "task"))
    for worker in workers:
        table.add_row(
            *_process_cells(worker.id, worker.pid, worker.state),
            worker.task or "",
            str(worker.tasks_done),
            str(worker.restarts),
            f"{worker.rss_bytes / 2**20:.0f}" if worker.rss_bytes else "-",
            worker.last_exit or "",
        )
    return table


def _shards_table(shards: list[ShardStatus], title: str = "shards") -> Table:
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("shard", "worker", "state", "guilds", "latency ms"):
        table.add_column(column, justify="left" if column == "state" else "right")
    for shard in shards:
        table.add_row(
            str(shard.id),
            str(shard.worker),
            _styled_state(shard.state),
            str(shard.guilds),
            _optional(shard.latency_ms),
        )
    return table


def _shard_state_counts(shards: list[ShardStatus]) -> Text:
    """``ready 60 · connecting 3 · down 1``, coloured by state."""
    counts = Counter(shard.state for shard in shards)
    text = Text()
    for state in sorted(counts, key=_state_rank):
        if text:
            text.append(" · ")
        text.append(f"{state} {counts[state]}", style=STATE_STYLES.get(state, ""))
    return text


def status_table(status: SharderStatus) -> RenderableType:
    """The whole status: header line, workers, compute pool and shards (compact above 32)."""
    parts: list[RenderableType] = [_header(status), _workers_table(status.workers)]
    for change in (status.reshard, status.move, status.roll):
        if change is not None:
            style = "bold red" if change.state in ("failed", "cancelled") else "bold"
            parts.insert(1, Text(change.line(), style=style))
    if status.compute:
        parts.append(_compute_table(status.compute, status.compute_pool))
    if len(status.shards) <= COMPACT_SHARDS:
        parts.append(_shards_table(status.shards))
    else:
        parts.append(Text.assemble(("shards: ", "bold"), _shard_state_counts(status.shards)))
        not_ready = [shard for shard in status.shards if shard.state != "ready"]
        if not_ready:
            title = f"shards not ready ({len(not_ready)} of {len(status.shards)})"
            parts.append(_shards_table(not_ready, title))
    return Group(*parts)


def _progress_line(status: SharderStatus) -> RenderableType:
    """``shards ready 3/8 [bar]  connecting 3-4 · waiting_identify 5-7``: start-up progress."""
    waiting: dict[str, list[int]] = {}
    for shard in status.shards:
        if shard.state != "ready":
            waiting.setdefault(shard.state, []).append(shard.id)
    # Scattered ids of a thousand shards would fill the screen: the line ends in an ellipsis.
    states = Text(no_wrap=True, overflow="ellipsis")
    for state in sorted(waiting, key=_state_rank):
        if states:
            states.append(" · ")
        states.append(f"{state} {shard_ranges(waiting[state])}", style=STATE_STYLES.get(state, ""))
    line = Table.grid(padding=(0, 1))
    line.add_row(
        Text(f"shards ready {status.ready_shards}/{status.shard_count}", style="bold"),
        ProgressBar(total=max(status.shard_count, 1), completed=status.ready_shards, width=30),
        states,
    )
    return line


def _all_ready(status: SharderStatus) -> bool:
    return status.shard_count > 0 and status.ready_shards == status.shard_count


class StatusDisplay:
    """Keeps the console showing ``snapshot()`` until ``stop()`` or cancellation."""

    def __init__(
        self,
        snapshot: Callable[[], SharderStatus],
        console: Console | None = None,
        interval: float = 1.0,
        summary_interval: float = 10.0,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._snapshot = snapshot
        self._clock = clock
        self.console = console or Console()
        self._interval = interval
        self._summary_interval = summary_interval
        self._stopping = asyncio.Event()
        # What the plain-line mode last reported, to write only what changed. Copies, not the
        # snapshot itself: a snapshot function may update one status object in place.
        self._seen_state: str | None = None
        self._seen_workers: dict[int, tuple[str, int]] = {}  # id -> (state, restarts)
        self._seen_ready: set[int] = set()
        self._seen_changes: list[str] = []
        self._last_summary: str | None = None
        self._next_summary_at = 0.0

    def stop(self) -> None:
        """End ``run()`` at its next refresh; the live display is stopped cleanly."""
        self._stopping.set()

    async def run(self) -> None:
        if self.console.is_terminal:
            await self._run_live()
        else:
            await self._run_lines()

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._interval)

    async def _run_live(self) -> None:
        # auto_refresh=False: refreshes happen here, on the loop, instead of on rich's thread.
        # Leaving the with block (stop or cancel) draws the last frame and restores the cursor.
        with Live(console=self.console, auto_refresh=False) as live:
            while not self._stopping.is_set():
                live.update(self._live_renderable(self._snapshot()), refresh=True)
                await self._pause()

    def _live_renderable(self, status: SharderStatus) -> RenderableType:
        if _all_ready(status):
            return status_table(status)
        return Group(_progress_line(status), status_table(status))

    async def _run_lines(self) -> None:
        self._next_summary_at = self._clock() + self._summary_interval
        while not self._stopping.is_set():
            for line in self._changes(self._snapshot()):
                # out(): no markup, wrapping or highlighting, so the line is written as is.
                self.console.out(line, highlight=False)
            await self._pause()

    def _changes(self, status: SharderStatus) -> list[str]:
        """The plain lines that report what changed since the previous call."""
        lines: list[str] = []
        if self._seen_state is None:
            marker = " (simulated)" if status.simulated else ""
            lines.append(
                f"sharder {status.state}: pid {status.pid}, {status.shard_count} shards on "
                f"{len(status.workers)} workers, api {status.api_url}{marker}"
            )
        elif self._seen_state != status.state:
            lines.append(f"sharder {self._seen_state} -> {status.state}")
        self._seen_state = status.state
        for worker in status.workers:
            line = _worker_change(self._seen_workers.get(worker.id), worker)
            if line:
                lines.append(line)
        self._seen_workers = {
            worker.id: (worker.state, worker.restarts) for worker in status.workers
        }
        ready = _ready_ids(status)
        if ready != self._seen_ready:
            lines.append(_ready_change(status, self._seen_ready, ready))
        self._seen_ready = ready
        changes = [
            change.line()
            for change in (status.roll, status.move, status.reshard)
            if change is not None
        ]
        lines.extend(line for line in changes if line not in self._seen_changes)
        self._seen_changes = changes
        now = self._clock()
        if now >= self._next_summary_at:
            self._next_summary_at = now + self._summary_interval
            summary = _summary_line(status)
            if summary != self._last_summary:
                self._last_summary = summary
                lines.append(summary)
        return lines


def _ready_ids(status: SharderStatus) -> set[int]:
    return {shard.id for shard in status.shards if shard.state == "ready"}


def _worker_change(before: tuple[str, int] | None, worker: WorkerStatus) -> str | None:
    """``worker 1: restarted (2 restarts, last exit: ...), backoff -> spawning (pid 12, shards
    4-7)``, or None when neither its state nor its restart count changed."""
    where = f"(pid {worker.pid or '-'}, shards {shard_ranges(worker.shards) or '-'})"
    if before is None:
        return f"worker {worker.id}: {worker.state} {where}"
    state_before, restarts_before = before
    events: list[str] = []
    if worker.restarts != restarts_before:
        exit_reason = f", last exit: {worker.last_exit}" if worker.last_exit else ""
        events.append(f"restarted ({worker.restarts} restarts{exit_reason})")
    if worker.state != state_before:
        events.append(f"{state_before} -> {worker.state}")
    elif events:
        events.append(f"now {worker.state}")
    if not events:
        return None
    return f"worker {worker.id}: {', '.join(events)} {where}"


def _ready_change(status: SharderStatus, before: set[int], now: set[int]) -> str:
    """``shards ready 5/8 (ready: 3-4; not ready: 2 down)``."""
    details: list[str] = []
    if now - before:
        details.append(f"ready: {shard_ranges(list(now - before))}")
    lost = before - now
    if lost:
        states = {shard.id: shard.state for shard in status.shards}
        gone = ", ".join(f"{shard_id} {states.get(shard_id, 'gone')}" for shard_id in sorted(lost))
        details.append(f"not ready: {gone}")
    return f"shards ready {len(now)}/{status.shard_count} ({'; '.join(details)})"


def _summary_line(status: SharderStatus) -> str:
    """The periodic one-line summary (no uptime: the log's own timestamps say when)."""
    workers_ready = sum(worker.state == "ready" for worker in status.workers)
    compute_ready = sum(worker.state == "ready" for worker in status.compute)
    rss_bytes = sum(w.rss_bytes for w in status.workers) + sum(c.rss_bytes for c in status.compute)
    rss = rss_bytes / 2**20
    return (
        f"status: {status.state}, shards ready {status.ready_shards}/{status.shard_count}, "
        f"workers ready {workers_ready}/{len(status.workers)}, "
        f"compute ready {compute_ready}/{len(status.compute)} "
        f"({status.compute_pool.queued} queued), "
        f"{status.events_per_s:.0f} events/s, RSS {rss:.0f} MiB"
    )
