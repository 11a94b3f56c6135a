"""The sharder end to end: ``python -m sharder start --simulate`` with real workers, real hikari
and the simulator; what a user of the reference bot and of ``ShardContext`` sees."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import stat
import time
from collections import Counter
from typing import Any

import aiohttp
import psutil

from simulator.child import call_control
from tests.sharder_run import all_ready, run_cli, running_sharder

SHARDS = 8
WORKERS = 4
GUILDS = 64


async def still_running(processes: list[psutil.Process], within: float) -> list[psutil.Process]:
    """Those of ``processes`` still running after ``within`` seconds. A zombie has exited: an
    orphan's exit is reaped by whatever adopted it (in a container's init that may be never)."""

    def running(process: psutil.Process) -> bool:
        try:
            return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + within
    alive = [p for p in processes if running(p)]
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        alive = [p for p in alive if running(p)]
    return alive


async def test_eight_shards_on_four_workers_serve_exactly_their_guilds_and_answer_commands() -> (
    None
):
    async with running_sharder(shards=SHARDS, workers=WORKERS, guilds=GUILDS) as sharder:
        status = await sharder.wait_ready()
        assert status["shard_count"] == SHARDS
        assert [w["shards"] for w in status["workers"]] == [[0, 1], [2, 3], [4, 5], [6, 7]]
        assert all(w["state"] == "ready" and w["pid"] for w in status["workers"])

        sim = await sharder.simulator()
        world = await call_control(sim.control_url, "GET", "/world")
        expected = Counter((guild_id >> 22) % SHARDS for guild_id in world["guild_ids"])
        assert {s["id"]: s["guilds"] for s in status["shards"]} == dict(expected)
        sessions = await call_control(sim.control_url, "GET", "/sessions")
        assert sorted((s["shard_id"], s["guilds"]) for s in sessions) == sorted(expected.items())

        guild_id = world["guild_ids"][5]
        ping = await sharder.ask("!ping", guild_id)
        assert re.fullmatch(rf"pong from shard {(guild_id >> 22) % SHARDS} \(latency .+\)", ping)

        members = GUILDS * 26  # 25 members and the bot in every guild
        stats = await sharder.ask("!stats")
        assert stats.startswith(f"guilds: {GUILDS}, members: {members}, shards: {SHARDS}/{SHARDS}")

        for target in world["guild_ids"][:SHARDS]:
            where = await sharder.ask(f"!where {target}", world["guild_ids"][0])
            shard_id = (target >> 22) % SHARDS
            assert f"({target}) is on shard {shard_id}, worker {shard_id // 2}" in where


async def test_request_and_broadcast_cross_workers_with_deadlines_and_a_killed_target() -> None:
    async with running_sharder(shards=SHARDS, workers=WORKERS, guilds=GUILDS) as sharder:
        status = await sharder.wait_ready()
        sim = await sharder.simulator()
        guild_ids = (await call_control(sim.control_url, "GET", "/world"))["guild_ids"]
        home = next(g for g in guild_ids if (g >> 22) % SHARDS == 0)  # worker 0 asks
        far = next(g for g in guild_ids if (g >> 22) % SHARDS == 7)  # worker 3 answers
        far_worker = status["workers"][3]

        echoed = await sharder.ask(f"!call {far} echo hello", home)
        assert echoed.startswith("ok ") and f'"pid": {far_worker["pid"]}' in echoed
        assert '"shard_id": 7' in echoed and '"payload": "hello"' in echoed

        plain = await sharder.ask(f"!call {far} echo_plain hi", home)
        assert plain.startswith("ok ") and f'"pid": {far_worker["pid"]}' in plain
        plain_failure = await sharder.ask(f"!call {far} fail_plain", home)
        assert plain_failure.startswith("error handler_failed ValueError: plain failure on shard 7")

        assert (await sharder.ask(f"!call {far} sleep 3 0.5", home)).startswith("error timeout")
        assert (await sharder.ask(f"!call {far} nothing", home)).startswith("error no_handler")
        failed = await sharder.ask(f"!call {far} fail", home)
        assert failed.startswith("error handler_failed RuntimeError: failing on shard 7")

        outcomes = json.loads(await sharder.ask("!all echo x", home))
        assert sorted(outcomes) == [str(shard) for shard in range(SHARDS)]
        assert all(o["ok"] and o["value"]["shard_id"] == int(s) for s, o in outcomes.items())

        # A request in flight to a worker that is then killed: answered at once, not at 30 s.
        waiting = await sharder.say(f"!call {far} sleep 20 30", home)
        await asyncio.sleep(0.5)
        os.kill(far_worker["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        answer = await sharder.reply_to(waiting)
        assert answer.startswith("error target_down"), answer
        assert time.monotonic() - killed_at < 10


async def test_a_killed_worker_is_seen_at_once_and_its_shards_come_back() -> None:
    async with running_sharder(shards=4, workers=2, guilds=16) as sharder:
        before = (await sharder.wait_ready())["workers"][1]
        os.kill(before["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        seen = await sharder.wait_until(lambda s: s["workers"][1]["pid"] != before["pid"], 5)
        assert time.monotonic() - killed_at < 1.0, "the exit was not seen within a second"
        assert seen["workers"][1]["last_exit"] == "killed by SIGKILL"
        after = await sharder.wait_ready()
        assert after["workers"][1]["restarts"] == 1 and after["workers"][1]["pid"] != before["pid"]
        assert after["workers"][0]["restarts"] == 0
        assert_every_shard_answers(await sharder.ask("!stats"), after)


async def test_a_restart_comes_after_its_backoff_not_at_the_next_heartbeat() -> None:
    async with running_sharder(shards=2, workers=2, guilds=8, heartbeat_interval=10.0) as sharder:
        before = (await sharder.wait_ready())["workers"][1]
        os.kill(before["pid"], signal.SIGKILL)
        killed_at = time.monotonic()
        await sharder.wait_until(lambda s: s["workers"][1]["pid"] not in (None, before["pid"]), 5)
        # The backoff is 0.2 s; the supervisor's loop must not sleep on to its next heartbeat.
        assert time.monotonic() - killed_at < 1.5


async def test_a_stopped_worker_is_declared_hung_killed_and_replaced() -> None:
    async with running_sharder(shards=4, workers=2, guilds=16) as sharder:
        before = (await sharder.wait_ready())["workers"][0]
        os.kill(before["pid"], signal.SIGSTOP)
        replaced = await sharder.wait_until(
            lambda s: s["workers"][0]["pid"] not in (None, before["pid"]), 10
        )
        assert replaced["workers"][0]["last_exit"].startswith("hung: 3 heartbeats unanswered")
        assert (
            not psutil.pid_exists(before["pid"])
            or psutil.Process(before["pid"]).status() == "zombie"
        )
        after = await sharder.wait_ready()
        assert after["workers"][0]["restarts"] == 1


async def test_a_worker_that_crashes_on_start_backs_off_then_fails_while_others_serve() -> None:
    async with running_sharder(
        shards=4, workers=2, guilds=16, entry_point="tests.bots.probe:setup_crashing_worker_1"
    ) as sharder:
        failed = await sharder.wait_until(lambda s: s["workers"][1]["state"] == "failed", 60)
        worker = failed["workers"][1]
        assert worker["restarts"] == 3 and worker["pid"] is None  # the cap: 3 restarts
        assert worker["last_exit"] == "exit code 1"
        assert failed["workers"][0]["state"] == "ready"
        assert "worker 1 crashes on start" in sharder.log()
        assert re.search(r"restart 2 in 0\.4 s", sharder.log()), "no exponential backoff"

        sim = await sharder.simulator()
        guild_ids = (await call_control(sim.control_url, "GET", "/world"))["guild_ids"]
        home = next(g for g in guild_ids if (g >> 22) % 4 == 0)
        down = next(g for g in guild_ids if (g >> 22) % 4 == 3)
        assert (await sharder.ask("!ping", home)).startswith("pong from shard 0")
        refused = await sharder.ask(f"!call {down} echo", home)
        assert refused.startswith("error target_down worker 1 (shards 2-3) failed")
        outcomes = json.loads(await sharder.ask("!all echo", home))
        assert [outcomes[str(s)]["ok"] for s in range(4)] == [True, True, False, False]
        assert outcomes["2"]["code"] == "target_down"


async def test_a_malformed_frame_replaces_its_worker_and_nothing_else() -> None:
    async with running_sharder(shards=4, workers=2, guilds=16) as sharder:
        before = await sharder.wait_ready()
        sim = await sharder.simulator()
        guild_ids = (await call_control(sim.control_url, "GET", "/world"))["guild_ids"]
        on_worker_1 = next(g for g in guild_ids if (g >> 22) % 4 == 2)
        await sharder.say("!garbage", on_worker_1)
        replaced = await sharder.wait_until(
            lambda s: s["workers"][1]["pid"] not in (None, before["workers"][1]["pid"]), 10
        )
        assert replaced["workers"][1]["last_exit"].startswith("link ended")
        assert "worker 1 link ended" in sharder.log()
        assert re.search(r"worker 1 link ended: .*(checksum|CRC|frame)", sharder.log(), re.I)
        assert replaced["workers"][0]["pid"] == before["workers"][0]["pid"]
        # The message never finished: Discord replays it to the next process, which it kills
        # too; the one after starts new sessions, so it cannot do it forever.
        again = await sharder.wait_until(
            lambda s: s["workers"][1]["restarts"] == 2 and all_ready(s), 30
        )
        assert "its next start identifies" in sharder.log()
        assert again["workers"][0]["pid"] == before["workers"][0]["pid"]
        assert_every_shard_answers(await sharder.ask("!stats"), again)


async def test_an_identify_for_another_workers_shard_is_refused_at_once() -> None:
    async with running_sharder(shards=4, workers=2, guilds=16) as sharder:
        await sharder.wait_ready()
        sim = await sharder.simulator()
        guild_ids = (await call_control(sim.control_url, "GET", "/world"))["guild_ids"]
        on_worker_0 = next(g for g in guild_ids if (g >> 22) % 4 == 0)
        answer = await sharder.ask("!identify 3", on_worker_0)
        assert answer.startswith("error invalid shard 3 is not worker 0's (it has [0, 1])"), answer
        assert float(answer.split(" after ")[1].removesuffix(" s")) < 1.0  # not at the deadline
        assert "refused an IDENTIFY: shard 3 is not worker 0's" in sharder.log()


async def test_sigterm_stops_everything_cleanly_with_exit_0() -> None:
    async with running_sharder(shards=4, workers=2, guilds=8) as sharder:
        await sharder.wait_ready()
        children = psutil.Process(sharder.process.pid).children(recursive=True)
        assert len(children) >= 3  # two workers and the simulator
        sharder.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(sharder.process.wait, 20) == 0
        alive = await still_running(children, within=2)
        assert not alive, f"left running: {alive}"
        assert not sharder.socket.exists()


async def test_kill_9_of_the_master_takes_every_child_with_it() -> None:
    async with running_sharder(shards=4, workers=2, guilds=8) as sharder:
        await sharder.wait_ready()
        children = psutil.Process(sharder.process.pid).children(recursive=True)
        assert len(children) >= 3
        sharder.process.kill()
        alive = await still_running(children, within=2)
        assert not alive, f"orphans left after 2 s: {alive}"


async def test_status_restart_and_stop_from_the_command_line() -> None:
    async with running_sharder(shards=4, workers=2, guilds=8) as sharder:
        await sharder.wait_ready()
        here = sharder.directory
        assert stat.S_IMODE(sharder.socket.stat().st_mode) == 0o600

        shown = await asyncio.to_thread(run_cli, "status", "--json", cwd=here)
        assert shown.returncode == 0, shown.stderr
        status = json.loads(shown.stdout)
        assert status["shard_count"] == 4 and status["api_url"].startswith("http://127.0.0.1:")
        for worker in status["workers"]:
            assert {"id", "pid", "state", "shards", "restarts", "rss_bytes"} <= set(worker)
            assert worker["state"] == "ready" and worker["rss_bytes"] > 0
        assert all(
            {"id", "worker", "state", "guilds", "latency_ms"} <= set(shard)
            and shard["state"] == "ready"
            for shard in status["shards"]
        )
        table = await asyncio.to_thread(run_cli, "status", cwd=here)
        assert (
            table.returncode == 0 and "ready" in table.stdout and "shards ready 4/4" in table.stdout
        )

        second = await asyncio.to_thread(run_cli, "start", "--simulate", cwd=here)
        assert second.returncode == 2 and "already running" in second.stderr

        unknown = await asyncio.to_thread(run_cli, "restart", "9", cwd=here)
        assert unknown.returncode == 1 and "no worker 9" in unknown.stderr
        old_pid = status["workers"][1]["pid"]
        restarted = await asyncio.to_thread(run_cli, "restart", "1", cwd=here)
        assert restarted.returncode == 0 and "worker 1 restarting" in restarted.stdout
        after = await sharder.wait_until(
            lambda s: s["workers"][1]["pid"] not in (None, old_pid) and all_ready(s), 30
        )
        assert (
            after["workers"][1]["restarts"] == 1
            and after["workers"][1]["last_exit"] == "exit code 0"
        )

        stopped = await asyncio.to_thread(run_cli, "stop", cwd=here)
        assert stopped.returncode == 0 and "stopping" in stopped.stdout
        assert await asyncio.to_thread(sharder.process.wait, 20) == 0


async def test_the_simulator_child_is_restarted_on_its_port_and_the_shards_come_back() -> None:
    async with running_sharder(shards=2, workers=1, guilds=4) as sharder:
        before = await sharder.wait_ready()
        first = simulator_child(sharder.process.pid)
        assert first is not None
        first.kill()
        for _ in range(200):  # a new simulator on the same port, and every shard back
            await asyncio.sleep(0.1)
            now = simulator_child(sharder.process.pid)
            if now is None or now.pid == first.pid or not all_ready(await sharder.status()):
                continue
            # The master may not have heard of the disconnects yet: ready means ready here only
            # once the new simulator has the shards' new sessions.
            control_url = (await sharder.simulator()).control_url
            try:
                sessions = await call_control(control_url, "GET", "/sessions")
            except (OSError, aiohttp.ClientError):  # the new simulator is not listening yet
                continue
            if {session["shard_id"] for session in sessions if session["connected"]} == {0, 1}:
                break
        else:
            raise AssertionError("the simulator or the shards did not come back")
        after = await sharder.status()
        assert after["api_url"] == before["api_url"]  # the same port: the workers' URLs hold
        assert "the simulator exited" in sharder.log()
        assert (await sharder.ask("!ping")).startswith("pong from shard")


def simulator_child(master: int) -> psutil.Process | None:
    for child in psutil.Process(master).children():
        with contextlib.suppress(psutil.Error):  # a child may be gone while we look
            if "simulator" in " ".join(child.cmdline()):
                return child
    return None


def assert_every_shard_answers(stats: str, status: dict[str, Any]) -> None:
    """Every shard answered the broadcast, and the master counts every guild on its shard.

    The bot's own counts (``guilds: N``) are of what hikari has cached: a process that resumed
    sessions has only what arrived since, as Discord sends no GUILD_CREATE on a RESUME.
    """
    assert "shards: 4/4" in stats, stats
    assert sum(shard["guilds"] for shard in status["shards"]) == 16
