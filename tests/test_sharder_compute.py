"""The compute pool end to end: compute workers supervised by a real master, tasks asked for by
real shard workers (the probe bot's ``!compute``), limits enforced by the kernel and the sandbox."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
from typing import Any

from PIL import Image

from simulator.child import call_control
from simulator.world import EMOJI_BASE
from tests.sharder_run import RunningSharder, running_sharder

TASKS = 'entry_point = "tests.bots.compute_tasks:setup"'


async def compute(
    sharder: RunningSharder, task: str, args: dict[str, Any], timeout: float = 5.0, count: int = 1
) -> list[str]:
    answer = await sharder.ask(f"!compute {task} {json.dumps(args, separators=(',', ':'))} "
                               f"{timeout} {count}")  # fmt: skip
    replies: list[str] = json.loads(answer)
    return replies


def compute_worker(status: dict[str, Any], compute_id: int = 0) -> dict[str, Any]:
    worker: dict[str, Any] = status["compute"][compute_id]
    return worker


async def reply_with_attachment(
    sharder: RunningSharder, content: str, guild_id: int
) -> Image.Image:
    """The image the bot attached to its reply to ``content``, decoded."""
    image = Image.open(io.BytesIO(await sharder.attachment_of_reply(content, guild_id)))
    image.load()
    return image


async def test_math_and_jumbo_are_answered_end_to_end_by_the_reference_bot() -> None:
    async with running_sharder(shards=2, workers=1, guilds=8) as sharder:
        await sharder.wait_ready()
        sim = await sharder.simulator()
        guild_id = (await call_control(sim.control_url, "GET", "/world"))["guild_ids"][0]
        assert await sharder.ask("!math r = 2; pi * r**2", guild_id) == "12.566370614359172"
        assert await sharder.ask("!math factorial(20)", guild_id) == "2432902008176640000"
        huge = await sharder.ask("!math 2**20000", guild_id)
        assert huge.endswith("(6021 digits)") and huge.startswith("3980")
        refused = await sharder.ask("!math 9**9**9**9", guild_id)
        assert refused.startswith("cannot compute: position 4: the power would have about")
        assert await sharder.ask("!math ().__class__", guild_id) == (
            "cannot compute: position 1: attribute access is not allowed"
        )

        still, animated = guild_id | EMOJI_BASE, guild_id | (EMOJI_BASE + 1)
        image = await reply_with_attachment(sharder, f"!jumbo <:still:{still}> 😀", guild_id)
        assert (image.format, image.size, getattr(image, "n_frames", 1)) == ("PNG", (264, 128), 1)
        image = await reply_with_attachment(
            sharder, f"!jumbo <:still:{still}> <a:moving:{animated}> 🇺🇸", guild_id
        )
        assert image.format == "GIF" and image.size == (400, 128)  # 3 x 128, 2 gaps of 8
        assert getattr(image, "n_frames", 1) == 8  # the simulator's animated emoji has 8 frames

        assert await sharder.ask("!jumbo no emoji here", guild_id) == (
            "no jumbo: no emoji found in the text"
        )
        missing = await sharder.ask(f"!jumbo <:gone:{guild_id | 0xFF}>", guild_id)
        assert missing.startswith(f"no jumbo: emoji {guild_id | 0xFF} not found on the CDN")


def assert_behind_the_shard_workers(status: dict[str, Any]) -> None:
    """Compute processes run niced (by the configured 10) and under the batch policy."""
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    for worker in status["workers"]:
        assert os.getpriority(os.PRIO_PROCESS, worker["pid"]) == ours
        assert os.sched_getscheduler(worker["pid"]) == os.SCHED_OTHER
    for worker in status["compute"]:
        assert os.getpriority(os.PRIO_PROCESS, worker["pid"]) == min(19, ours + 10)
        assert os.sched_getscheduler(worker["pid"]) == os.SCHED_BATCH


async def test_a_task_that_loops_forever_is_killed_at_its_deadline_and_the_next_is_served() -> None:
    async with running_sharder(shards=2, workers=1, guilds=8, compute=TASKS) as sharder:
        status = await sharder.wait_ready()
        assert_behind_the_shard_workers(status)
        first_pid = compute_worker(status)["pid"]
        assert await compute(sharder, "pid", {}) == [f"ok {first_pid}"]

        started = time.monotonic()
        [answer] = await compute(sharder, "spin", {}, timeout=1.0)
        waited = time.monotonic() - started
        assert answer.startswith("error timeout the spin task passed its deadline")
        assert "compute worker 0 was killed and is being replaced" in answer
        assert waited < 4.0  # the deadline, plus a message's trip through the simulator

        status = await sharder.wait_until(
            lambda s: compute_worker(s)["state"] == "ready" and compute_worker(s)["restarts"] == 1
        )
        worker = compute_worker(status)
        assert worker["pid"] != first_pid
        assert_behind_the_shard_workers(status)  # the replacement too
        assert "the spin task passed its deadline (killed by SIGKILL)" in worker["last_exit"]
        assert status["compute_pool"]["timed_out"] == 1
        assert await compute(sharder, "math", {"expression": "6*7"}) == ['ok "42"']
        assert await compute(sharder, "pid", {}) == [f"ok {worker['pid']}"]


async def test_limits_files_sockets_memory_and_cpu_time_are_enforced() -> None:
    settings = f"{TASKS}\ncpu_seconds = 1\nmemory_mb = 512"
    async with running_sharder(shards=2, workers=1, guilds=8, compute=settings) as sharder:
        await sharder.wait_ready()
        [read] = await compute(sharder, "read_file", {"path": "/etc/hostname"})
        assert read == "error handler_failed PermissionError: a compute task may not use open"
        [connect] = await compute(sharder, "connect", {"port": 9})
        assert connect.startswith("error handler_failed PermissionError: a compute task may not")
        [allocate] = await compute(sharder, "allocate", {"mib": 1024})
        assert allocate == "error handler_failed out of memory (limit 512 MiB)"
        assert await compute(sharder, "allocate", {"mib": 16}) == [f"ok {16 * 1024 * 1024}"]

        [spin] = await compute(sharder, "spin", {}, timeout=20.0)
        assert spin == "error limit the spin task passed its CPU limit (killed by SIGXCPU)"
        status = await sharder.wait_until(lambda s: compute_worker(s)["state"] == "ready")
        assert await compute(sharder, "math", {"expression": "2**5"}) == ['ok "32"']
        assert compute_worker(status)["restarts"] == 1


async def test_tasks_past_their_cpu_limit_never_make_the_worker_a_crash_loop() -> None:
    # More kills than the crash-loop cap (3 in 30 s here): each is the task's, not the worker's.
    settings = f"{TASKS}\ncpu_seconds = 1"
    async with running_sharder(shards=2, workers=1, guilds=8, compute=settings) as sharder:
        await sharder.wait_ready()
        for _ in range(5):
            [spin] = await compute(sharder, "spin", {}, timeout=20.0)
            assert spin.startswith("error limit the spin task passed its CPU limit")
            await sharder.wait_until(lambda s: compute_worker(s)["state"] == "ready")
        status = await sharder.status()
        assert compute_worker(status)["restarts"] == 5
        assert await compute(sharder, "math", {"expression": "2**5"}) == ['ok "32"']


async def test_a_full_queue_refuses_at_once_and_the_others_are_served_in_turn() -> None:
    settings = f"{TASKS}\nqueue_size = 1"
    async with running_sharder(shards=2, workers=1, guilds=8, compute=settings) as sharder:
        await sharder.wait_ready()
        answers = await compute(sharder, "sleep", {"seconds": 0.5}, timeout=5.0, count=4)
        assert answers.count("ok 0.5") == 2  # one ran, one waited for it
        busy = [answer for answer in answers if answer.startswith("error busy")]
        assert len(busy) == 2
        assert "all 1 compute workers are busy and 1 tasks wait" in busy[0]
        status = await sharder.status()
        assert status["compute_pool"]["busy"] == 2
        assert status["compute_pool"]["done"] == 2


async def test_a_compute_worker_killed_mid_task_has_its_caller_told_at_once() -> None:
    async with running_sharder(shards=2, workers=1, guilds=8, compute=TASKS) as sharder:
        status = await sharder.wait_ready()
        pid = compute_worker(status)["pid"]
        asking = asyncio.create_task(compute(sharder, "sleep", {"seconds": 30}, timeout=40.0))
        await sharder.wait_until(lambda s: compute_worker(s)["task"] == "sleep")
        started = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        [answer] = await asyncio.wait_for(asking, 10)
        assert time.monotonic() - started < 5.0
        assert answer.startswith("error target_down compute worker 0 died running the sleep task")
        assert "killed by SIGKILL" in answer
        await sharder.wait_until(lambda s: compute_worker(s)["state"] == "ready")
        assert await compute(sharder, "math", {"expression": "1+1"}) == ['ok "2"']
