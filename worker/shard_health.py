"""What a shard worker tells the master about its shards: state, guilds, latency, sessions.

A HEARTBEAT_ACK carries it all (``ack``), with the event count read from each shard's session
and the loop's lag; the moment a shard has all its guilds is reported at once, not at the next
heartbeat (``report_guild_loads``). The shards' states are written by ``ShardWorker`` as hikari
and the identify gate move them; only read here.

Apart from ``ShardWorker``: this changes with what the master's status shows, not with how the
worker runs its shards.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import Counter

import hikari
from hikari.impl.shard import GatewayShardImpl

from child.link import MasterLink, resident_bytes
from protocol import shard_for_guild
from protocol.messages import (
    EVENT_TYPES_MAX,
    OTHER_EVENTS,
    HeartbeatAck,
    ShardHealth,
    ShardState,
)
from worker import shard_hooks
from worker.spec import Session, WorkerSpec

LAG_PROBE_INTERVAL = 0.25
EVENT_TYPE = re.compile(r"[A-Za-z0-9_]{1,64}")  # as the master takes them (``EventType``)
# While guilds load, how often their count is checked, and for how long at most (guilds that
# stay unavailable never arrive).
LOAD_CHECK_INTERVAL = 0.1
LOAD_WATCH_LIMIT = 600.0


class WorkerHealth:
    def __init__(self, spec: WorkerSpec, bot: hikari.GatewayBot, link: MasterLink) -> None:
        self.spec = spec
        self.bot = bot
        self.link = link
        self.states: dict[int, ShardState] = dict.fromkeys(spec.shard_ids, "starting")
        self.guild_counts: dict[int, int] = {}  # as READY said
        self.events = 0  # dispatches received, counted by their sequence numbers
        # Each shard's session and the seq its dispatches were counted up to. Not a listener on
        # every event: that makes hikari build an object and a task for each one, which cost
        # 70% more CPU and 90 MiB more memory over a load of 2,500 guilds of 50 members.
        self._counted: dict[int, tuple[str, int]] = {}
        # Each shard's dispatches by event type, the first EVENT_TYPES_MAX - 1 types apart.
        self.event_types: dict[int, dict[str, int]] = {}
        self.loop_lag_ms = 0.0
        self.resume(spec.sessions, spec.guild_counts)

    def resume(self, sessions: dict[int, Session], guild_counts: dict[int, int]) -> None:
        """Shards that resume these sessions, with the guild counts their READY said."""
        self.guild_counts.update(guild_counts)
        for shard_id, session in sessions.items():
            self._counted[shard_id] = (session.session_id, session.seq)

    def count_event(self, shard_id: int, event_type: str) -> None:
        counts = self.event_types.get(shard_id)
        if counts is None:
            counts = self.event_types[shard_id] = {}
        if event_type in counts:
            counts[event_type] += 1
        elif len(counts) < EVENT_TYPES_MAX - 1 and EVENT_TYPE.fullmatch(event_type):
            counts[event_type] = 1
        else:
            counts[OTHER_EVENTS] = counts.get(OTHER_EVENTS, 0) + 1

    def forget(self, shard_id: int) -> None:
        """The shard moved to another worker."""
        self.states.pop(shard_id, None)
        self.event_types.pop(shard_id, None)
        self.guild_counts.pop(shard_id, None)
        self._counted.pop(shard_id, None)

    def ack(self, nonce: int) -> HeartbeatAck:
        """The answer to the master's heartbeat ``nonce`` (0: a report of our own)."""
        shard_count = self.spec.shard_count
        guilds = Counter(
            shard_for_guild(int(guild_id), shard_count)
            for guild_id in self.bot.cache.get_guilds_view()
        )
        shards = []
        for shard_id, state in self.states.items():
            shard = self.bot.shards.get(shard_id)
            latency = shard.heartbeat_latency if shard is not None else math.nan
            session = shard_hooks.session_of(shard) if isinstance(shard, GatewayShardImpl) else None
            if session is not None:
                self._count_events(shard_id, session)
            shards.append(
                ShardHealth(
                    shard_id=shard_id,
                    state=state,
                    # A resumed shard's cache holds only what came since; READY said the rest.
                    guilds=max(guilds.get(shard_id, 0), self.guild_counts.get(shard_id, 0)),
                    guilds_loaded=guilds.get(shard_id, 0),
                    latency_ms=None if math.isnan(latency) else round(latency * 1000, 2),
                    session_id=session.session_id if session else None,
                    seq=session.seq if session else None,
                    resume_url=session.resume_url if session else None,
                    events=dict(self.event_types.get(shard_id, {})),
                )
            )
        return HeartbeatAck(
            nonce=nonce,
            loop_lag_ms=round(self.loop_lag_ms, 2),
            rss_bytes=resident_bytes(),
            events=self.events,
            shards=shards,
        )

    def _count_events(self, shard_id: int, session: Session) -> None:
        counted_session, counted_seq = self._counted.get(shard_id, ("", 0))
        if session.session_id == counted_session:
            self.events += max(0, session.seq - counted_seq)
        else:  # a new session numbers its dispatches from 1
            self.events += session.seq
        self._counted[shard_id] = (session.session_id, session.seq)

    async def report_guild_loads(self) -> None:
        """Tell the master the moment a shard has all its guilds, not at the next heartbeat.

        Counted from the cache every ``LOAD_CHECK_INTERVAL``: a listener on every guild's
        arrival would have hikari build an event object for each.
        """
        # A shard that resumed gets no GUILD_CREATEs: its cache never fills.
        loaded = set(self._counted)
        deadline = time.monotonic() + LOAD_WATCH_LIMIT
        while len(loaded) < len(self.states) and time.monotonic() < deadline:
            await asyncio.sleep(LOAD_CHECK_INTERVAL)
            health = self.ack(0)
            newly = {
                shard.shard_id
                for shard in health.shards
                if shard.state == "ready"
                and shard.shard_id not in loaded
                and shard.guilds_loaded >= self.guild_counts.get(shard.shard_id, 0)
            }
            if newly:
                loaded |= newly
                self.link.send(health)

    async def probe_loop_lag(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_PROBE_INTERVAL)
            self.loop_lag_ms = max(0.0, (time.monotonic() - started - LAG_PROBE_INTERVAL) * 1000)
