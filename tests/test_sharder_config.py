"""The configuration file: the documented example is exactly the defaults, and every rule that
ties keys together is enforced."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharder.config import Config, ConfigError, load

EXAMPLE = Path(__file__).resolve().parent.parent / "sharder.example.toml"


def test_the_documented_example_is_exactly_the_defaults() -> None:
    assert load(EXAMPLE) == Config()


def test_no_file_means_the_defaults() -> None:
    assert load(None) == Config()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sharding]\nshards = 2\nworkers = 3\n", "must not exceed sharding.shards"),
        ("[supervisor]\nrestart_backoff = 5\nrestart_backoff_max = 1\n", "restart_backoff"),
        ("[supervisor]\nheartbeat_misses = 0\n", "supervisor.heartbeat_misses"),
        ("[control]\nsocket = ''\n", "control.socket"),
        ("[metrics]\naddress = '9464'\n", "metrics.address"),
        ("[metrics]\naddress = '127.0.0.1:70000'\n", "port 70000 is past 65535"),
        ("[metrics]\nadmin_token = 'short'\n", "metrics.admin_token: at least 16"),
        ("log_format = 'xml'\n", "log_format"),
    ],
)
def test_rules_between_and_within_keys(text: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(path)
