"""The systemd unit: the settings the sharder's service behaviour depends on are there, and
systemd itself accepts the file (where systemd-analyze is installed)."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_unit_runs_the_master_as_a_notify_service_with_a_watchdog(tmp_path: Path) -> None:
    text = (ROOT / "scripts" / "sharder.service").read_text().replace("@ROOT@", str(ROOT))
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string(text)
    service = unit["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > 10  # above the master's default shutdown_timeout
    assert service["EnvironmentFile"] == "/etc/sharder/sharder.env"
    assert service["User"] == "sharder"
    assert service["ExecStart"].startswith(f"{ROOT}/.venv/bin/python -m sharder start")
    assert "--no-status" in service["ExecStart"]
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"  # a rolling restart
    if shutil.which("systemd-analyze"):
        path = tmp_path / "sharder.service"
        path.write_text(text)
        result = subprocess.run(
            ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, timeout=60
        )
        problems = [line for line in result.stderr.splitlines() if "sharder.service" in line]
        assert not problems, result.stderr
