"""The real discord.py AutoShardedClient against the simulator, started through its CLI.

A second client library, written independently of hikari, must log in over REST, learn its shard
count and gateway URL from ``GET /gateway/bot``, bring both shards READY with exactly the guilds
the sharding formula gives each, and answer a user's ``!ping`` with a reply the simulator
records: proof that the simulator follows Discord's protocol and not one library's habits.

discord.py reports much of what goes wrong in log records, not exceptions: an exception in an
event handler is logged as "Ignoring exception in ...", an event or reference it does not know
at debug level. So the test reads its logs too, and fails on any error, any warning but the
voice ones, and any record that calls a payload unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections import defaultdict

import pytest
import yarl

from tests.simulation import eventually, has_reply, simulator_process

with warnings.catch_warnings():
    # discord.player imports audioop, deprecated since Python 3.11; voice is not used here.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    import discord.http
    import discord.utils
    from discord.gateway import DiscordWebSocket

SHARDS = 2
GUILDS = 12
READY_TIMEOUT = 20.0
REPLY_TIMEOUT = 10.0
CLOSE_TIMEOUT = 10.0

# The transport compression discord.py asks for: zstd-stream when zstandard (or Python 3.14's
# compression.zstd) is importable, zlib-stream otherwise.
COMPRESSION = discord.utils._ActiveDecompressionContext.COMPRESSION_TYPE

# Warnings discord.py logs once per process when optional voice packages are missing.
VOICE_WARNINGS = ("PyNaCl is not installed", "davey is not installed")
# The gateway's debug record of every payload received: long, and no verdict on the payload.
PAYLOAD_DUMP = "For Shard ID %s: WebSocket Event: %s"


class SimulatorClient(discord.AutoShardedClient):
    """Records the guilds each shard receives and answers ``!ping`` with a reply."""

    def __init__(self) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        # No shard_count: discord.py then asks GET /gateway/bot for the shard count and the
        # gateway URL, as against Discord. Given a shard_count, it would skip that call and
        # connect to its hard-coded DiscordWebSocket.DEFAULT_GATEWAY instead.
        super().__init__(intents=intents)
        self.guilds_by_shard: defaultdict[int, set[int]] = defaultdict(set)
        self.identified_shards: list[int] = []
        self.ready_shards: set[int] = set()
        self.readied = False

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        # discord.py's default sleeps 5 s before every IDENTIFY but the cluster's first, whatever
        # max_concurrency GET /gateway/bot reports. The simulator runs with --max-concurrency 2:
        # two identify buckets (shard_id % 2), so shards 0 and 1 sit in different buckets and
        # may IDENTIFY at once, as on Discord. The stats prove it: identify_violations stays 0.
        assert shard_id is not None
        self.identified_shards.append(shard_id)

    async def on_shard_ready(self, shard_id: int) -> None:
        self.ready_shards.add(shard_id)

    async def on_ready(self) -> None:
        for guild in self.guilds:
            self.guilds_by_shard[guild.shard_id].add(guild.id)
        self.readied = True

    async def on_guild_available(self, guild: discord.Guild) -> None:
        self.guilds_by_shard[guild.shard_id].add(guild.id)

    async def on_message(self, message: discord.Message) -> None:
        if not message.author.bot and message.content == "!ping":
            await message.reply("pong")


class DropPayloadDumps(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != PAYLOAD_DUMP


def complaints(records: list[logging.LogRecord]) -> list[str]:
    """discord.py's records of an error, a warning, or a payload it found unknown or unparsable."""
    found = []
    for record in records:
        template = str(record.msg)  # not the message: a payload's text must not match
        if (
            record.levelno >= logging.ERROR
            or (record.levelno >= logging.WARNING and not template.startswith(VOICE_WARNINGS))
            or "unknown" in template.lower()
            or "parse" in template.lower()
        ):
            error = record.exc_info[1] if record.exc_info else None
            cause = f": {type(error).__name__}: {error}" if error is not None else ""
            found.append(f"{record.levelname} {record.name}: {record.getMessage()}{cause}")
    return found


async def test_two_discordpy_shards_ready_with_their_guilds_and_answer_ping(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="discord")
    with contextlib.ExitStack() as cleanup:
        gateway_log = logging.getLogger("discord.gateway")
        dumps = DropPayloadDumps()
        gateway_log.addFilter(dumps)
        cleanup.callback(gateway_log.removeFilter, dumps)
        # simulator_process stops the child but leaves its stdout pipe to the garbage collector:
        # closed here once the child has stopped, as an ExitStack unwinds in reverse.
        pipes = cleanup.enter_context(contextlib.ExitStack())
        sim, process = cleanup.enter_context(
            simulator_process(
                "--guilds", str(GUILDS), "--shards", str(SHARDS), "--max-concurrency", str(SHARDS)
            )
        )
        assert process.stdout is not None
        pipes.callback(process.stdout.close)

        # Route reads the class attribute BASE when it is built: every REST call goes here.
        monkeypatch.setattr(discord.http.Route, "BASE", sim.rest_url)
        # discord.py falls back to DEFAULT_GATEWAY only without a gateway URL (a shard_count
        # given, or a new session after a non-resumable INVALID_SESSION). Nothing here should
        # need it: a closed local port makes any use fail loudly and never reach Discord.
        monkeypatch.setattr(
            DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL("ws://127.0.0.1:1/not-the-simulator")
        )

        def no_complaints() -> None:
            found = complaints(caplog.records)
            assert not found, "discord.py logged:\n" + "\n".join(found)

        client = SimulatorClient()
        connecting: asyncio.Task[None] | None = None
        try:
            await client.login(sim.token)
            world = await sim.control("GET", "/world")
            assert client.user is not None and client.user.id == world["bot_id"]
            assert client.application_id == world["bot_id"]

            expected: defaultdict[int, set[int]] = defaultdict(set)
            for guild_id in world["guild_ids"]:
                expected[(guild_id >> 22) % SHARDS].add(guild_id)
            assert len(expected) == SHARDS, "the world must spread guilds over every shard"

            task = connecting = asyncio.create_task(client.connect(reconnect=False))

            def still_well() -> None:
                no_complaints()
                if task.done():
                    task.result()  # raises what ended it, e.g. a KeyError in an event parser
                    raise AssertionError("discord.py's connect() returned early")

            def all_ready() -> bool:
                still_well()
                received = sum(map(len, client.guilds_by_shard.values()))
                return client.readied and received >= GUILDS

            await eventually(all_ready, timeout=READY_TIMEOUT)
            assert client.shard_count == SHARDS
            assert sorted(client.identified_shards) == list(range(SHARDS))
            assert client.ready_shards == set(range(SHARDS))
            assert dict(client.guilds_by_shard) == dict(expected)
            assert {guild.id for guild in client.guilds} == set(world["guild_ids"])
            for guild in client.guilds:
                assert not guild.unavailable and guild.me is not None and guild.text_channels

            injected = await sim.control("POST", "/messages", {"content": "!ping"})

            async def replied() -> bool:
                still_well()
                return await has_reply(sim, injected, "pong")

            await eventually(replied, timeout=REPLY_TIMEOUT)
            stats = await sim.stats()
            assert stats["compression"] == {COMPRESSION: SHARDS}
            assert stats["identifies"] == SHARDS
            assert stats["identify_violations"] == 0
            assert stats["sessions_active"] == SHARDS
            assert stats["bot_messages"] == 1
            assert stats["rest_401"] == 0 and stats["rest_429"] == 0
            assert stats["close_codes"] == {}, "the simulator closed a connection"
        finally:
            await client.close()
            if connecting is not None:
                # close() queues a clean close, on which connect() returns.
                await asyncio.wait({connecting}, timeout=CLOSE_TIMEOUT)
                if not connecting.done():
                    connecting.cancel()
                    await asyncio.wait({connecting}, timeout=CLOSE_TIMEOUT)
        assert not connecting.cancelled(), "connect() did not return after close()"
        assert connecting.exception() is None

        async def sessions_ended() -> bool:
            stats = await sim.stats()
            active: int = stats["sessions_active"]
            connections: int = stats["connections"]
            return active == 0 and connections == SHARDS  # and no connection but the first two

        await eventually(sessions_ended, timeout=CLOSE_TIMEOUT)
        no_complaints()
