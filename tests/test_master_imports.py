"""The master runs no shard, no compute task and no REST proxy: it imports none of what they
need (hikari, Pillow, emoji data, aiohttp) nor, as a service, the terminal display (rich)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.sharder_run import PROJECT_ROOT

CHILDREN_ONLY = ("hikari", "PIL", "emoji", "aiohttp", "multidict", "yarl", "psutil", "rich")

# What ``python -m sharder start --no-status`` imports, up to the running supervisor.
MASTER_IMPORTS = """
import json, sys
from sharder import cli, master, simulated, supervisor, intents, gateway_info
config = cli.load_config(cli.parser().parse_args(["start", "--simulate", "--no-status"]))
cli.intent_value(config.bot.intents)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_the_master_imports_nothing_its_children_run() -> None:
    ran = subprocess.run(
        [sys.executable, "-c", MASTER_IMPORTS],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    imported = set(json.loads(ran.stdout))
    assert "sharder" in imported and "worker" in imported  # the spawn target and the specs
    assert imported.isdisjoint(CHILDREN_ONLY), sorted(imported & set(CHILDREN_ONLY))
