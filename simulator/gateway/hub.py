"""The gateway's shared side: the websocket endpoint, the session registry, identify buckets and
the daily session budget, and the routing of a guild's events to the sessions of its shard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from simulator.config import SimulatorConfig
from simulator.gateway.connection import CLOSE_TIMEOUT, GatewayConnection
from simulator.gateway.guilds import stream_guild_creates
from simulator.gateway.protocol import EVENT_INTENTS, MESSAGE_CONTENT, encode
from simulator.limits import Clock, FixedWindow
from simulator.payloads import Payload, PayloadFactory
from simulator.sessions import Session, SessionRegistry
from simulator.stats import Stats
from simulator.world import World


class Gateway:
    def __init__(
        self,
        config: SimulatorConfig,
        world: World,
        payloads: PayloadFactory,
        stats: Stats,
        clock: Clock = time.monotonic,
    ) -> None:
        self.config = config
        self.world = world
        self.payloads = payloads
        self.stats = stats
        # Every window and deadline of the gateway and its connections runs on this clock.
        self.clock = clock
        self.sessions = SessionRegistry(config.resume_window, clock)
        self.session_budget = FixedWindow(
            config.session_start_total, config.session_start_reset, clock
        )
        self.connections: set[GatewayConnection] = set()
        self.url = ""  # ws://HOST:PORT/gateway, known once the server is bound
        self._identify_buckets = [
            FixedWindow(1, config.identify_window, clock) for _ in range(config.max_concurrency)
        ]
        # Tasks no handler awaits (guild streams, closing a displaced connection): held, as the
        # loop keeps only a weak reference to a task, and cancelled at shutdown.
        self._background: set[asyncio.Task[None]] = set()

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            compress=False, decode_text=False, timeout=CLOSE_TIMEOUT, max_msg_size=1 << 20
        )
        await ws.prepare(request)
        connection = GatewayConnection(self, request, ws)
        self.connections.add(connection)
        try:
            await connection.run()
        finally:
            self.connections.discard(connection)
        return ws

    def identify_bucket(self, shard_id: int) -> FixedWindow:
        return self._identify_buckets[shard_id % self.config.max_concurrency]

    def shard_guilds(self, shard_id: int, shard_count: int) -> list[int]:
        return [
            guild_id
            for guild_id in self.world.guild_ids
            if (guild_id >> 22) % shard_count == shard_id
        ]

    def dispatch(self, guild_id: int, event: str, data: Payload) -> int:
        """Send one event to every session on the guild's shard; returns how many took it."""
        required = EVENT_INTENTS.get(event, 0)
        event_name = event.encode()
        encoded: bytes | None = None
        without_content: bytes | None = None
        reached = 0
        # No copy: a dispatch never changes the registry (a dropped connection detaches later).
        for session in self.sessions.for_guild(guild_id):
            if required and not session.intents & required:
                continue
            if event == "MESSAGE_CREATE" and not session.intents & MESSAGE_CONTENT:
                if without_content is None:
                    without_content = encode({**data, "content": ""})
                session.dispatch(event_name, without_content)
            else:
                if encoded is None:
                    encoded = encode(data)
                session.dispatch(event_name, encoded)
            if event == "GUILD_CREATE":
                session.guild_ids.add(guild_id)
            elif event == "GUILD_DELETE":
                session.guild_ids.discard(guild_id)
            reached += 1
        return reached

    def stream_guilds(self, session: Session, guild_ids: list[int]) -> None:
        """GUILD_CREATE for each of a new session's guilds, without stalling the loop."""
        self.in_background(stream_guild_creates(self.world, self.payloads, session, guild_ids))

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def connections_of_shard(self, shard_id: int) -> list[GatewayConnection]:
        return [
            connection
            for connection in self.connections
            if connection.session is not None and connection.session.shard_id == shard_id
        ]

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(
            *(connection.close(1001, "simulator shutting down") for connection in self.connections),
            return_exceptions=True,
        )
