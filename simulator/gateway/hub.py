"""The gateway's shared side: the websocket endpoint, the session registry, identify buckets and
the daily session budget, the routing of a guild's events to the sessions of its shard (of
every shard count) with their tally, and 4011 for shards that guilds joining overfill."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from simulator.config import SimulatorConfig
from simulator.gateway.connection import CLOSE_TIMEOUT, GatewayConnection
from simulator.gateway.guilds import stream_guild_creates
from simulator.gateway.protocol import EVENT_INTENTS, MESSAGE_CONTENT, CloseCode, encode
from simulator.gateway.sharding import guilds_by_shard, sharding_required
from simulator.gateway.tally import DispatchTally
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
        self.tally = DispatchTally(world, stats)
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
        for shard_count, sessions in self.sessions.for_guild(guild_id):
            taken = 0
            for session in sessions:
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
                taken += 1
            if taken:
                self.tally.add(guild_id, shard_count, taken)
                reached += taken
        return reached

    def require_sharding(self) -> int:
        """End every session whose shard holds more guilds than ``max_guilds_per_shard`` now
        that guilds joined, closing its connection with 4011, as Discord does; returns how many.

        Each shard count is judged on its own: guilds that overfill a shard of 4 may leave every
        shard of 8 within the cap.
        """
        limit = self.config.max_guilds_per_shard
        held_by_count: dict[int, Counter[int]] = {}
        refused: list[tuple[Session, str]] = []
        for shard_count, shard_id, sessions in self.sessions.shards():
            if shard_count not in held_by_count:
                held_by_count[shard_count] = guilds_by_shard(self.world.guild_ids, shard_count)
            reason = sharding_required(held_by_count[shard_count][shard_id], limit)
            if reason is not None:
                refused.extend((session, reason) for session in sessions)
        for session, reason in refused:
            connection = session.outbox
            # Ended at once, so nothing more is dispatched to it; a RESUME of it is refused.
            self.sessions.end(session)
            if isinstance(connection, GatewayConnection):
                self.in_background(connection.close(CloseCode.SHARDING_REQUIRED, reason))
        return len(refused)

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
