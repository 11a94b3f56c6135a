"""Rolling restarts: every worker replaced in turn by a process with the bot code imported anew,
each loaded beside the running one before it takes the shards' sessions over by RESUME. Under a
steady stream of ``!ping`` nothing is lost, nothing answered twice, and no session is started
anew; new code that does not load stops the roll while the running processes keep serving."""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
from pathlib import Path

import psutil

from tests.changes import through_traffic
from tests.sharder_run import PROJECT_ROOT, run_cli, running_sharder
from tests.test_sharder_handoff import STRICT

SHARDS = 8
WORKERS = 4
GUILDS = 32
PING_INTERVAL = 0.05  # 20 a second, over every shard
WORKING_BOT = "from tests.bots.probe import setup\n"
BROKEN_BOT = "raise RuntimeError('a deploy that does not import')\n"
HANGING_BOT = "import time\ntime.sleep(3600)\n"
STEP_TIMEOUT = 3.0


async def test_a_rolling_restart_under_traffic_loses_nothing_answers_once_identifies_nothing() -> (
    None
):
    async with running_sharder(
        shards=SHARDS, workers=WORKERS, guilds=GUILDS, simulator=STRICT
    ) as run:
        status = await run.wait_ready()
        old_pids = [worker["pid"] for worker in status["workers"]]
        roll = await through_traffic(run, "restart", "--rolling")
        assert "rolling restart done: 4 workers" in roll.command.stdout
        for worker in range(WORKERS):
            assert f"rolling restart: worker {worker} loading" in roll.command.stdout
        assert roll.doubles == 0
        assert roll.gateway == {"identifies": 0, "resumes": SHARDS, "identify_violations": 0}

        status = await run.status()
        assert status["roll"]["state"] == "done"
        assert status["roll"]["replaced"] == [0, 1, 2, 3]
        new_pids = [worker["pid"] for worker in status["workers"]]
        assert not set(new_pids) & set(old_pids), (old_pids, new_pids)
        assert [worker["restarts"] for worker in status["workers"]] == [1, 1, 1, 1]


async def test_new_code_that_does_not_load_stops_the_roll_and_the_old_processes_serve_on() -> None:
    with tempfile.TemporaryDirectory(prefix="sharder-bot-") as bot_directory:
        bot = Path(bot_directory) / "rolled_bot.py"
        bot.write_text(WORKING_BOT)
        path = f"{PROJECT_ROOT}{os.pathsep}{bot_directory}"
        async with running_sharder(
            shards=4,
            workers=2,
            guilds=16,
            entry_point="rolled_bot:setup",
            supervisor=f"change_step_timeout = {STEP_TIMEOUT}",
            environment={"PYTHONPATH": path},
        ) as run:
            status = await run.wait_ready()
            old_pids = [worker["pid"] for worker in status["workers"]]
            children = len(psutil.Process(run.process.pid).children())
            bot.write_text(BROKEN_BOT)
            roll = await asyncio.to_thread(run_cli, "restart", "--rolling", cwd=run.directory)
            assert roll.returncode == 1
            assert "rolling restart failed: worker 0's new process exited before it was ready" in (
                roll.stderr
            )
            assert "workers 0, 1 keep their running processes" in roll.stderr
            status = await run.status()
            assert status["roll"]["state"] == "failed" and status["roll"]["replaced"] == []
            assert [worker["pid"] for worker in status["workers"]] == old_pids
            assert all(worker["state"] == "ready" for worker in status["workers"])
            assert "pong" in await run.reply_to(await run.say("!ping"))

            bot.write_text(HANGING_BOT)
            roll = await asyncio.to_thread(run_cli, "restart", "--rolling", cwd=run.directory)
            assert roll.returncode == 1
            assert (
                f"worker 0's new process did not load the bot code within {STEP_TIMEOUT:g} s"
                in roll.stderr
            )
            status = await run.status()
            assert [worker["pid"] for worker in status["workers"]] == old_pids
            # The standby that hung was killed, not left beside the worker.
            assert len(psutil.Process(run.process.pid).children()) == children
            assert "pong" in await run.reply_to(await run.say("!ping"))

            # Fixed, and rolled by SIGHUP (systemd's ExecReload) this time.
            bot.write_text(WORKING_BOT + "# fixed\n")
            run.process.send_signal(signal.SIGHUP)
            status = await run.wait_until(
                lambda s: s["roll"]["state"] == "done" and s["roll"]["took_s"] is not None, 60
            )
            assert not {worker["pid"] for worker in status["workers"]} & set(old_pids)
            assert "pong" in await run.reply_to(await run.say("!ping"))
