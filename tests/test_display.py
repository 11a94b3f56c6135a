"""The terminal output: shard ranges, the status table (full and compact), and the display's
two modes: plain lines when not on a terminal, a live table on one. The display's refreshes and
summaries run on virtual time: a test advances the clock instead of waiting for it."""

from __future__ import annotations

import asyncio
import io

import pytest
from rich.console import Console

from sharder.display import StatusDisplay, shard_ranges, status_table
from sharder.status import (
    ComputePoolStatus,
    ComputeStatus,
    MoveStatus,
    RollStatus,
    SharderStatus,
    ShardStatus,
    WorkerStatus,
)
from tests.virtual_time import advance, virtual_clock

SHARDS_PER_WORKER = 4
REFRESH = 0.01  # the display's refresh interval in the tests
COMPUTE_EXIT = "the spin task passed its deadline (killed by SIGKILL)"


def make_status(shard_count: int = 8, ready: set[int] | None = None) -> SharderStatus:
    """Two or more workers of four shards each; the shards in ``ready`` (default all) are ready,
    the others connecting."""
    ready = set(range(shard_count)) if ready is None else ready
    workers = shard_count // SHARDS_PER_WORKER
    return SharderStatus(
        pid=4242,
        uptime_s=3725.0,
        state="running",
        shard_count=shard_count,
        api_url="http://127.0.0.1:8765/api/v10",
        simulated=True,
        events_per_s=12.5,
        workers=[
            WorkerStatus(
                id=worker,
                pid=5000 + worker,
                state="ready",
                shards=list(range(SHARDS_PER_WORKER * worker, SHARDS_PER_WORKER * (worker + 1))),
                restarts=0,
                rss_bytes=(80 + worker) * 2**20,
                loop_lag_ms=1.5,
                last_exit=None,
                heartbeat_p99_ms=0.75 if worker == 0 else None,
            )
            for worker in range(workers)
        ],
        shards=[
            ShardStatus(
                id=shard,
                worker=shard // SHARDS_PER_WORKER,
                state="ready" if shard in ready else "connecting",
                guilds=100 + shard,
                latency_ms=41.0 if shard in ready else None,
            )
            for shard in range(shard_count)
        ],
        compute=[
            ComputeStatus(
                id=0,
                pid=6000,
                state="ready",
                task="jumbo",
                tasks_done=41,
                restarts=1,
                rss_bytes=60 * 2**20,
                last_exit=COMPUTE_EXIT,
            )
        ],
        compute_pool=ComputePoolStatus(
            queued=3, queue_size=64, done=41, timed_out=1, busy=2, lost=0
        ),
    )


def plain_console() -> tuple[Console, io.StringIO]:
    output = io.StringIO()
    return Console(file=output, width=120, force_terminal=False), output


def render(status: SharderStatus) -> str:
    console, output = plain_console()
    console.print(status_table(status))
    return output.getvalue()


def table_rows(text: str, title: str) -> list[list[str]]:
    """The cells of each body row of the table printed under ``title``."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.strip() == title)
    rows: list[list[str]] = []
    for line in lines[start + 1 :]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            rows.append([cell.strip() for cell in line.strip("│").split("│")])
    return rows


async def wait_until_printed(output: io.StringIO, text: str, timeout: float = 1.0) -> None:
    """Let the display refresh, in virtual time, until ``text`` is printed, at most ``timeout``
    seconds of it (the tests refresh every 0.01 s)."""
    clock = virtual_clock()
    deadline = clock() + timeout
    while text not in output.getvalue():
        if clock() > deadline:
            raise AssertionError(f"{text!r} not printed in {timeout} s:\n{output.getvalue()}")
        await advance(REFRESH)


@pytest.mark.parametrize(
    ("shard_ids", "expected"),
    [
        ([], ""),
        ([5], "5"),
        ([0, 1, 2, 3], "0-3"),
        ([4, 6, 8, 9], "4,6,8-9"),
        ([8, 9], "8-9"),
        ([0, 2], "0,2"),
        ([3, 1, 2, 2, 7], "1-3,7"),
        ([0, 1, 3, 4, 5, 9], "0-1,3-5,9"),
    ],
)
def test_shard_ranges(shard_ids: list[int], expected: str) -> None:
    assert shard_ranges(shard_ids) == expected


def test_status_table_shows_the_header_workers_and_shards() -> None:
    status = make_status(ready={0, 1, 2, 3, 4, 6})
    status.workers[1].state = "backoff"
    status.workers[1].pid = None
    status.workers[1].restarts = 2
    status.workers[1].loop_lag_ms = None
    status.workers[1].last_exit = "killed by SIGKILL"
    text = render(status)

    header = text.splitlines()[0]
    for part in (
        "sharder running",
        "pid 4242",
        "up 1h 02m",
        "shards ready 6/8",
        "12.5 events/s",
        "http://127.0.0.1:8765/api/v10",
        "simulated",
    ):
        assert part in header
    assert table_rows(text, "workers") == [
        ["0", "5000", "ready", "0-3", "0", "80", "1.5", "0.8", ""],
        ["1", "-", "backoff", "4-7", "2", "81", "-", "-", "killed by SIGKILL"],
    ]
    connecting = {5, 7}
    assert table_rows(text, "shards") == [
        [str(shard), str(shard // 4), "connecting", str(100 + shard), "-"]
        if shard in connecting
        else [str(shard), str(shard // 4), "ready", str(100 + shard), "41"]
        for shard in range(8)
    ]
    assert "\x1b" not in text


def test_status_table_shows_the_compute_pool() -> None:
    text = render(make_status())
    title = "compute pool: 3/64 queued, 41 done, 1 timed out, 2 refused busy, 0 lost"
    assert table_rows(text, title) == [
        ["0", "6000", "ready", "jumbo", "41", "1", "60", COMPUTE_EXIT],
    ]


def test_status_table_shows_where_a_rolling_restart_is_and_how_it_ended() -> None:
    status = make_status()
    assert "rolling restart" not in render(status)
    status.roll = RollStatus(
        state="rolling", workers=2, replaced=[0], worker=1, phase="handing_over"
    )
    assert "rolling restart: worker 1 handing_over (1/2 replaced)" in render(status)
    status.roll = RollStatus(
        state="failed", workers=2, replaced=[0], reason="worker 1's new process exited", took_s=4.2
    )
    assert "rolling restart failed: worker 1's new process exited (1 replaced in 4.2 s)" in (
        render(status)
    )
    status.roll = RollStatus(state="done", workers=2, replaced=[0, 1], took_s=6.0)
    assert "rolling restart done: 2 workers in 6.0 s" in render(status)
    status.move = MoveStatus(shard=3, source=0, target=1, state="moving", phase="releasing")
    assert "moving shard 3 from worker 0 to worker 1: releasing" in render(status)
    status.move = MoveStatus(shard=3, source=0, target=1, state="done", took_s=0.4)
    assert "moved shard 3 from worker 0 to worker 1 in 0.4 s" in render(status)


def test_header_has_no_simulated_marker_against_discord() -> None:
    status = make_status()
    status.simulated = False
    assert "simulated" not in render(status)


def test_states_are_coloured_on_a_terminal() -> None:
    status = make_status(ready={0, 1, 2, 3})
    status.workers[1].state = "failed"
    output = io.StringIO()
    console = Console(file=output, width=120, force_terminal=True, color_system="standard")
    console.print(status_table(status))
    text = output.getvalue()
    assert "\x1b[32mready" in text  # green
    assert "\x1b[33mconnecting" in text  # yellow
    assert "\x1b[1;31mfailed" in text  # bold red


def test_many_shards_list_only_those_not_ready() -> None:
    not_ready = {5, 17, 40}
    status = make_status(64, ready=set(range(64)) - not_ready)
    status.shards[17].state = "down"
    status.shards[40].state = "waiting_identify"
    text = render(status)
    assert "shards: ready 61 · connecting 1 · waiting_identify 1 · down 1" in text
    rows = table_rows(text, "shards not ready (3 of 64)")
    assert [(row[0], row[2]) for row in rows] == [
        ("5", "connecting"),
        ("17", "down"),
        ("40", "waiting_identify"),
    ]
    assert "shards ready 61/64" in text
    assert len(text.splitlines()) < 40  # not one row per shard


def test_many_shards_all_ready_is_one_line() -> None:
    text = render(make_status(64))
    assert "shards: ready 64" in text
    assert "not ready" not in text


@pytest.mark.virtual_time
async def test_plain_lines_report_changes_once_and_no_escape_codes() -> None:
    status = make_status(ready={0, 1})
    console, output = plain_console()
    display = StatusDisplay(
        lambda: status, console, REFRESH, summary_interval=3600, clock=virtual_clock()
    )
    task = asyncio.create_task(display.run())
    try:
        await wait_until_printed(output, "shards ready 2/8 (ready: 0-1)")
        # The supervisor may update one status object in place: changes are still seen.
        status.shards[2].state = "ready"
        await wait_until_printed(output, "shards ready 3/8 (ready: 2)")
        status.workers[1].restarts = 1
        status.workers[1].state = "spawning"
        status.workers[1].pid = 6001
        status.workers[1].last_exit = "killed by SIGKILL"
        status.shards[1].state = "resuming"
        await wait_until_printed(output, "worker 1: restarted")
        await advance(20 * REFRESH)  # 20 refreshes with nothing new
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5.0)
    text = output.getvalue()
    assert text.splitlines() == [
        "sharder running: pid 4242, 8 shards on 2 workers, api http://127.0.0.1:8765/api/v10"
        " (simulated)",
        "worker 0: ready (pid 5000, shards 0-3)",
        "worker 1: ready (pid 5001, shards 4-7)",
        "shards ready 2/8 (ready: 0-1)",
        "shards ready 3/8 (ready: 2)",
        "worker 1: restarted (1 restarts, last exit: killed by SIGKILL), ready -> spawning"
        " (pid 6001, shards 4-7)",
        "shards ready 2/8 (not ready: 1 resuming)",
    ]
    assert "\x1b" not in text


@pytest.mark.virtual_time
async def test_plain_summary_is_periodic_and_never_repeated() -> None:
    status = make_status()
    console, output = plain_console()
    display = StatusDisplay(
        lambda: status, console, REFRESH, summary_interval=0.05, clock=virtual_clock()
    )
    task = asyncio.create_task(display.run())
    summary = (
        "status: running, shards ready 8/8, workers ready 2/2, compute ready 1/1 (3 queued), "
        "12 events/s, RSS 221 MiB"
    )
    try:
        await wait_until_printed(output, summary)
        await advance(0.3)  # six summary periods, nothing changed
        assert output.getvalue().count("status: ") == 1
        status.events_per_s = 250.0
        await wait_until_printed(output, "250 events/s")
    finally:
        display.stop()
        await asyncio.wait_for(task, 5.0)
    assert output.getvalue().count("status: ") == 2


@pytest.mark.virtual_time
@pytest.mark.parametrize("ending", ["stop", "cancel"])
async def test_live_display_shows_progress_then_the_table_and_ends_clean(ending: str) -> None:
    status = make_status(ready={0, 1, 2})
    output = io.StringIO()
    console = Console(file=output, width=120, force_terminal=True)
    display = StatusDisplay(lambda: status, console, REFRESH, clock=virtual_clock())
    task = asyncio.create_task(display.run())
    try:
        await wait_until_printed(output, "shards ready 3/8")
        assert "connecting 3-7" in output.getvalue()
        for shard in status.shards:
            shard.state = "ready"
        printed = len(output.getvalue())
        # The header's count turns green; the progress line ("shards ready 8/8" in one piece)
        # is gone once every shard is ready.
        await wait_until_printed(output, "shards ready \x1b[32m8/8")
        assert "shards ready 8/8" not in output.getvalue()[printed:]
    finally:
        if ending == "stop":
            display.stop()
            await asyncio.wait_for(task, 5.0)
        else:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(task, 5.0)
    # Live hid the cursor while it drew; leaving it shows the cursor again.
    assert output.getvalue().endswith("\x1b[?25h")
