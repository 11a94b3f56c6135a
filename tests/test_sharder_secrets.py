"""The bot token reaches the shard workers in their spec, and no child through its environment:
not the compute workers (which parse images from anywhere), the REST gate or the simulator."""

from __future__ import annotations

import psutil

from tests.sharder_run import running_sharder

MARKER = "token-that-must-stay-in-the-master"


async def test_no_child_inherits_the_token_variable() -> None:
    async with running_sharder(
        shards=2, workers=2, guilds=8, environment={"DISCORD_TOKEN": MARKER}
    ) as sharder:
        status = await sharder.wait_ready()
        pids = [worker["pid"] for worker in status["workers"]]
        pids += [worker["pid"] for worker in status["compute"]]
        pids.append(status["rest_gate"]["pid"])
        children = psutil.Process(sharder.process.pid).children(recursive=True)
        assert set(pids) <= {child.pid for child in children}
        for child in children:
            assert MARKER not in child.environ().values(), child.cmdline()
