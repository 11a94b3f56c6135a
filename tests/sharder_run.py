"""Running ``python -m sharder start --simulate`` for integration tests, the way a user does.

The master runs in its own session in a fresh directory (its control socket lives there); its
output goes to a log file that is printed when a test fails. Whatever happens, every process it
started is gone when the test ends: SIGTERM first, then SIGKILL to anything left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from sharder.control import ControlUnavailable, call
from simulator.child import SimulatorEndpoints, call_control

PROJECT_ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
REPLY_TIMEOUT = 20.0
CLI_TIMEOUT = 60.0

# Fast supervision so that tests see hangs and restarts in a second or two.
TEST_CONFIG = """
log_level = "INFO"
{top}
[bot]
entry_point = "{entry_point}"
intents = ["ALL_UNPRIVILEGED", "MESSAGE_CONTENT", "GUILD_PRESENCES"]
[sharding]
shards = {shards}
workers = {workers}
{sharding}
[supervisor]
heartbeat_interval = {heartbeat_interval}
heartbeat_misses = 3
restart_backoff = 0.2
restart_backoff_max = 2.0
crash_loop_restarts = 3
crash_loop_window = 30.0
shutdown_timeout = 8.0
request_timeout = 5.0
{supervisor}
[compute]
workers = 1
{compute}
[rest]
{rest}
[simulator]
guilds = {guilds}
{simulator}
[metrics]
{metrics}
"""


@dataclass
class RunningSharder:
    process: subprocess.Popen[bytes]
    directory: Path
    log_path: Path
    descendants: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.directory / "sharder.sock"

    async def status(self) -> dict[str, Any]:
        answer = await call(self.socket, {"command": "status"})
        assert answer["ok"], answer
        status: dict[str, Any] = answer["status"]
        self.remember_children()
        return status

    async def command(self, request: dict[str, Any]) -> dict[str, Any]:
        return await call(self.socket, request)

    def remember_children(self) -> None:
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.process.pid).children(recursive=True)
            self.descendants.update((child.pid, child) for child in children)

    async def wait_until(self, check: Any, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """The first status for which ``check(status)`` holds."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the master exited with {self.process.returncode}")
            with contextlib.suppress(OSError, TimeoutError, ControlUnavailable):
                last = await self.status()
                if check(last):
                    return last
            await asyncio.sleep(0.1)
        raise TimeoutError(f"status never matched within {timeout} s; last: {last}")

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        return await self.wait_until(all_ready, timeout)

    async def simulator(self) -> SimulatorEndpoints:
        status = await self.status()
        base = status["api_url"].removesuffix("/api/v10")
        return SimulatorEndpoints(
            rest_url=status["api_url"],
            gateway_url=base.replace("http", "ws", 1) + "/gateway",
            control_url=f"{base}/_sim",
            cdn_url=base,
            token="",
        )

    async def say(
        self, content: str, guild_id: int | None = None, author_id: int | None = None
    ) -> dict[str, Any]:
        """Inject a user's message (from ``author_id``, else a member drawn at random);
        returns ``{"id", "guild_id", "channel_id", "author_id"}``."""
        sim = await self.simulator()
        body: dict[str, Any] = {"content": content}
        if guild_id is not None:
            body["guild_id"] = guild_id
        if author_id is not None:
            body["author_id"] = author_id
        injected: dict[str, Any] = await call_control(sim.control_url, "POST", "/messages", body)
        return injected

    async def reply_to(self, injected: dict[str, Any], timeout: float = REPLY_TIMEOUT) -> str:
        """The content of the bot's reply to an injected message."""
        content: str = (await self.reply_message(injected, timeout))["content"]
        return content

    async def reply_message(
        self, injected: dict[str, Any], timeout: float = REPLY_TIMEOUT
    ) -> dict[str, Any]:
        """The bot's reply to an injected message, as the simulator lists messages."""
        sim = await self.simulator()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = await call_control(
                sim.control_url, "GET", f"/messages?channel_id={injected['channel_id']}"
            )
            for reply in replies:
                reference = reply["message_reference"] or {}
                if reference.get("message_id") == str(injected["id"]):
                    return dict(reply)
            await asyncio.sleep(0.05)
        raise TimeoutError(f"no reply to {injected} within {timeout} s")

    async def attachment_of_reply(self, content: str, guild_id: int | None = None) -> bytes:
        """The bytes the bot attached to its reply to ``content``."""
        reply = await self.reply_message(await self.say(content, guild_id))
        assert reply["attachments"], f"a reply without an attachment: {reply['content']}"
        return await self.download(reply["attachments"][0]["url"])

    @staticmethod
    async def download(url: str) -> bytes:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200, url
            return await response.read()

    async def ask(
        self,
        content: str,
        guild_id: int | None = None,
        timeout: float = REPLY_TIMEOUT,
        author_id: int | None = None,
    ) -> str:
        return await self.reply_to(await self.say(content, guild_id, author_id), timeout)

    async def guild(self, guild_id: int) -> dict[str, Any]:
        """The simulator's ``owner_id``, ``member_ids`` and ``moderator_ids`` of a guild."""
        sim = await self.simulator()
        facts: dict[str, Any] = await call_control(sim.control_url, "GET", f"/guilds/{guild_id}")
        return facts

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def all_ready(status: dict[str, Any]) -> bool:
    """Every shard serving, and every compute worker."""
    shards = status["shards"]
    return (
        bool(shards)
        and all(shard["state"] == "ready" for shard in shards)
        and all(worker["state"] == "ready" for worker in status["compute"])
    )


def worker_of_guild(status: dict[str, Any], guild_id: int) -> dict[str, Any]:
    shard_id = (guild_id >> 22) % status["shard_count"]
    return next(worker for worker in status["workers"] if shard_id in worker["shards"])


@contextlib.asynccontextmanager
async def running_sharder(
    *flags: str,
    shards: int = 8,
    workers: int = 4,
    guilds: int = 64,
    entry_point: str = "tests.bots.probe:setup",
    simulator: str = "",
    sharding: str = "",
    supervisor: str = "",
    compute: str = "",
    rest: str = "",
    metrics: str = "",
    top: str = "",
    heartbeat_interval: float = 0.2,
    environment: dict[str, str] | None = None,
) -> AsyncIterator[RunningSharder]:
    """``simulator``, ``sharding``, ``supervisor``, ``compute``, ``rest``, ``metrics``: more
    keys of those tables of the config, as TOML lines; ``top``: of the top level."""
    directory = Path(tempfile.mkdtemp(prefix="sharder-", dir="/tmp"))  # short: socket paths
    config_path = directory / "sharder.toml"
    if "address" not in metrics:  # tests run side by side: each its own free port
        metrics = f'address = "127.0.0.1:0"\n{metrics}'
    text = TEST_CONFIG.format(
        entry_point=entry_point,
        shards=shards,
        workers=workers,
        guilds=guilds,
        simulator=simulator,
        sharding=sharding,
        supervisor=supervisor,
        compute=compute,
        rest=rest,
        metrics=metrics,
        top=top,
        heartbeat_interval=heartbeat_interval,
    )
    config_path.write_text(text)
    try:
        async with attended(launch(directory, config_path, flags, environment or {})) as running:
            yield running
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def restart_in(previous: RunningSharder) -> contextlib.AbstractAsyncContextManager[RunningSharder]:
    """A new master in the directory of one that has ended: same config, same state file."""
    return attended(launch(previous.directory, previous.directory / "sharder.toml", (), {}))


@contextlib.asynccontextmanager
async def attended(running: RunningSharder) -> AsyncIterator[RunningSharder]:
    """Its log shown if the test fails; stopped, and everything it started gone, at the end."""
    try:
        yield running
    except BaseException:
        sys.stderr.write(f"--- sharder log ---\n{running.log()[-20000:]}\n")
        raise
    finally:
        running.remember_children()
        stop(running)


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m sharder ARGUMENTS`` in ``cwd``, without a token in the environment."""
    environment = {key: value for key, value in os.environ.items() if key != "DISCORD_TOKEN"}
    return subprocess.run(
        [sys.executable, "-m", "sharder", *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env={**environment, "PYTHONPATH": str(PROJECT_ROOT)},
    )


def launch(
    directory: Path, config_path: Path, flags: tuple[str, ...], environment: dict[str, str]
) -> RunningSharder:
    log_path = directory / "sharder.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "sharder", "start", "--simulate", "--no-status",
             "--config", str(config_path), *flags],
            cwd=directory,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT), **environment},
        )  # fmt: skip
    return RunningSharder(process, directory, log_path)


def stop(running: RunningSharder) -> None:
    process = running.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for child in running.descendants.values():
        with contextlib.suppress(psutil.Error):
            child.kill()  # psutil checks it is still the same process, not a reused pid
