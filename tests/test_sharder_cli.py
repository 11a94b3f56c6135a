"""``python -m sharder`` refuses bad flags, bad configuration and a missing token with exit code 2
and a message that names the problem; the control commands say when no master is running."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sharder_run import run_cli as sharder


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["start", "--shards", "0"], "--shards: must be at least 1"),
        (["start", "--workers", "two"], "--workers: not an integer"),
        (["start", "--simulate", "--shards", "2", "--workers", "3"], "must not exceed"),
        (["start", "--traffic-rate", "-5", "--simulate"], "--traffic-rate must not be negative"),
        (["restart", "first"], "not an integer"),
        (["launch"], "invalid choice"),
        ([], "required"),
    ],
)
def test_bad_flags_exit_2_with_the_problem(
    arguments: list[str], message: str, tmp_path: Path
) -> None:
    result = sharder(*arguments, cwd=tmp_path)
    assert result.returncode == 2, result
    assert message in result.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[sharding]\nshards = 0\n", "sharding.shards: Expected `int` >= 1"),
        (
            "[supervisor]\nheartbeat_interval = 'fast'\n",
            "supervisor.heartbeat_interval: Expected `float`",
        ),
        ("[bot]\ncolour = 'blue'\n", "unknown field `colour`"),
        ("[bot]\nentry_point = 'no colon'\n", "bot.entry_point"),
        ("[bot]\nintents = ['GUILDS', 'TELEPATHY']\n", "bot.intents: unknown intent(s) TELEPATHY"),
        ("[sharding\nshards = 2\n", "is not valid TOML"),
        ("log_level = 'LOUD'\n", "log_level"),
        ("[discord]\napi_url = 'discord.com'\n", "discord.api_url"),
    ],
)
def test_a_bad_config_file_exits_2_naming_the_key(
    config: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "sharder.toml"
    path.write_text(config)
    result = sharder("start", "--simulate", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 2, result
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = sharder("start", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "nope.toml" in result.stderr


def test_no_token_says_how_to_run_either_way(tmp_path: Path) -> None:
    result = sharder("start", cwd=tmp_path)
    assert result.returncode == 2
    assert "DISCORD_TOKEN" in result.stderr and "--simulate" in result.stderr


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["stop"], ["restart", "0"]])
def test_control_commands_say_when_no_master_runs(command: list[str], tmp_path: Path) -> None:
    result = sharder(*command, cwd=tmp_path)
    assert result.returncode == 1
    assert "no sharder is running" in result.stderr and "sharder.sock" in result.stderr
