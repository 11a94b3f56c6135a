"""``python -m simulator`` as a user runs it: its printed endpoints, its stop, its flag errors."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.simulation import simulator_process

CLI_TIMEOUT = 30.0  # seconds a short-lived CLI run (help, a bad flag) may take on a busy machine
STOP_TIMEOUT = 15.0


def run_cli(*flags: str) -> subprocess.CompletedProcess[str]:
    """A CLI run that must end by itself: help, a bad flag, an unusable port."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "simulator", *flags],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"python -m simulator {' '.join(flags)} was still running after {CLI_TIMEOUT} s"
        )


def assert_usage_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: python -m simulator"), result.stderr
    # argparse ends with "PROG: error: MESSAGE"; the usage lines above it name every flag.
    error = result.stderr.splitlines()[-1]
    assert error.startswith("python -m simulator: error: "), result.stderr
    assert message in error, result.stderr


async def test_cli_prints_its_endpoints_serves_and_stops_cleanly_on_sigint() -> None:
    with simulator_process("--guilds", "10") as (sim, process):
        for url in (sim.rest_url, sim.gateway_url, sim.control_url, sim.cdn_url):
            assert urlsplit(url).hostname == "127.0.0.1", url
            assert urlsplit(url).port not in (None, 0), url
        assert sim.rest_url.startswith("http://") and sim.rest_url.endswith("/api/v10")
        assert sim.gateway_url.startswith("ws://") and sim.gateway_url.endswith("/gateway")
        assert sim.control_url.endswith("/_sim")
        assert len({urlsplit(url).port for url in (sim.rest_url, sim.gateway_url)}) == 1
        assert sim.token.count(".") == 2

        stats = await sim.stats()
        assert stats["rest_requests"] == 0
        timeout = aiohttp.ClientTimeout(total=15)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"{sim.control_url}/world") as world,
            http.get(
                f"{sim.rest_url}/users/@me", headers={"Authorization": f"Bot {sim.token}"}
            ) as me,
        ):
            assert (await world.json())["guild_count"] == 10
            assert me.status == 200
        assert (await sim.stats())["rest_requests"] == 1

        assert await stop_with(process, signal.SIGINT) == (0, "simulator stopped\n")


async def test_cli_stops_cleanly_on_sigterm() -> None:
    with simulator_process("--guilds", "2") as (_, process):
        assert await stop_with(process, signal.SIGTERM) == (0, "simulator stopped\n")


async def stop_with(process: subprocess.Popen[bytes], signum: int) -> tuple[int, str]:
    """Signal the simulator; its exit code and what it printed after its endpoints."""
    process.send_signal(signum)
    returncode = await asyncio.to_thread(process.wait, STOP_TIMEOUT)
    assert process.stdout is not None
    return returncode, process.stdout.read().decode()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--guilds", "abc"], "argument --guilds: invalid int value: 'abc'"),
        (["--identify-window", "0"], "identify_window must be positive"),
        (["--shards", "-1"], "shards must be positive"),
        (["--port", "70000"], "port must be between 0 and 65535"),
        (["--rest-route-window", "-0.5"], "rest_route_window must be positive"),
        (["--traffic-rate", "-1"], "--traffic-rate must not be negative"),
        (["--log-level", "LOUD"], "LOUD"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_cli_rejects_a_bad_flag_with_exit_2_and_a_message(flags: list[str], message: str) -> None:
    assert_usage_error(run_cli(*flags), message)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--guilds", "-1"], "guild"),
        (["--channels-per-guild", "300"], "channels_per_guild"),
        (["--members-per-guild", "-1"], "members_per_guild"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_cli_rejects_an_impossible_world_with_exit_2_and_a_message(
    flags: list[str], message: str
) -> None:
    # World sizes are checked by World itself, which only the running server builds: a bad one
    # must still be a usage error, not a traceback or a server that fails on its first request.
    assert_usage_error(run_cli("--port", "0", *flags), message)


def test_cli_help_exits_0_and_lists_the_flags() -> None:
    result = run_cli("--help")
    assert result.returncode == 0, result
    for flag in ("--identify-window", "--max-concurrency", "--guilds", "--port", "--strict"):
        assert flag in result.stdout
    assert result.stderr == ""


def test_cli_on_a_port_in_use_exits_1_saying_it_cannot_listen() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("--port", str(port), "--guilds", "1")
    assert result.returncode == 1, result
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "rest:" not in result.stdout
