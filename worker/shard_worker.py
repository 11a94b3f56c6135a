"""The shard worker process: hikari for a set of shards, the user's bot, and the master link.

Lifecycle (started by ``child.runtime``): hello with the master, bot code loaded
(``module:function`` called as ``function(bot, ctx)``), shards started; then it answers
heartbeats with its health, runs routed commands, and reports each shard's READY and
disconnects. It stops when the master says so (SHARD_DISCONNECT for all its shards) or the
link ends. Running the routed commands is ``shard_commands``'s: this module keeps hikari, the
shards' states and their health.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import math
import multiprocessing.connection
import os
import time
from collections import Counter

import hikari
from hikari.impl.shard import GatewayShardImpl

from child.link import MasterLink, RequestError, resident_bytes
from child.runtime import EXIT_UNUSABLE
from protocol import AnyMessage, shard_for_guild
from protocol.messages import (
    CommandBroadcast,
    CommandExec,
    GuildSync,
    Heartbeat,
    HeartbeatAck,
    IdentifyGrant,
    IdentifyRequest,
    IdentifySent,
    ShardDisconnect,
    ShardHealth,
    ShardReady,
    ShardState,
    StateChanged,
)
from worker import shard_hooks
from worker.context import ShardContext
from worker.entry_points import load_entry_point
from worker.shard_commands import ShardCommands
from worker.spec import Session, WorkerSpec

log = logging.getLogger("worker")

LAG_PROBE_INTERVAL = 0.25
# While guilds load, how often their count is checked, and for how long at most (guilds that
# stay unavailable never arrive).
LOAD_CHECK_INTERVAL = 0.1
LOAD_WATCH_LIMIT = 600.0
IDENTIFY_WAIT = 600.0  # one ask's deadline; a longer queue (a spent budget) is asked again
CLOSE_TIMEOUT = 5.0


async def serve(spec: WorkerSpec, pipe: multiprocessing.connection.Connection) -> int:
    """The process's entry (run by ``child.runtime``): the worker until it is told to stop."""
    try:
        shard_hooks.check_hikari()
    except shard_hooks.UnsupportedHikari as error:
        log.critical("this hikari cannot be used: %s", error)
        return EXIT_UNUSABLE
    spec.liveness.report(asyncio.get_running_loop(), spec.liveness_period)
    link = await MasterLink.open(pipe, "shard_worker", spec.worker_id)
    return await ShardWorker(spec, link).run()


def bot_user_id(token: str) -> int:
    """The bot's user id: a token's first part is it, base64-encoded."""
    first = token.split(".", 1)[0]
    return int(base64.b64decode(first + "=" * (-len(first) % 4)))


class ShardWorker:
    def __init__(self, spec: WorkerSpec, link: MasterLink) -> None:
        self.spec = spec
        self.link = link
        self.bot = hikari.GatewayBot(
            spec.token,
            rest_url=spec.api_url,
            intents=hikari.Intents(spec.intents),
            banner=None,
            logs=None,
            suppress_optimization_warning=True,
        )
        self.ctx = ShardContext(
            self.bot,
            link,
            worker_id=spec.worker_id,
            shard_ids=spec.shard_ids,
            shard_count=spec.shard_count,
            request_timeout=spec.request_timeout,
            compute_timeout=spec.compute_timeout,
            user_cache=spec.user_cache,
        )
        self.states: dict[int, ShardState] = dict.fromkeys(spec.shard_ids, "starting")
        self.guild_counts: dict[int, int] = dict(spec.guild_counts)
        self.events = 0  # dispatches received, counted by their sequence numbers
        # Each shard's session and the seq its dispatches were counted up to. Not a listener on
        # every event: that makes hikari build an object and a task for each one, which cost
        # 70% more CPU and 90 MiB more memory over a load of 2,500 guilds of 50 members.
        self._counted: dict[int, tuple[str, int]] = {
            shard_id: (session.session_id, session.seq)
            for shard_id, session in spec.sessions.items()
        }
        self.loop_lag_ms = 0.0
        self.stopping = asyncio.Event()
        self.commands = ShardCommands(
            self.ctx, link, spec.shard_ids, spec.shard_count, self.stopping
        )
        # Bound once: a COMMAND_EXEC, by far the most frequent message, then costs one lookup.
        self._start_command = self.commands.start

    async def run(self) -> int:
        spec = self.spec
        self._listen()
        shard_hooks.install(self._wait_for_identify_grant, self._identify_sent)
        if spec.sessions:
            log.info(
                "resuming sessions: %s",
                ", ".join(f"shard {i} from seq {s.seq}" for i, s in sorted(spec.sessions.items())),
            )
            shard_hooks.install_resume(spec.sessions, bot_user_id(spec.token))
        serving = asyncio.create_task(self._serve())
        lag_probe = asyncio.create_task(self._probe_loop_lag())
        load_watch = asyncio.create_task(self._report_guild_loads())
        # The shared state of our guilds arrives before the bot code runs or a shard connects.
        synced = await self.ctx.state.sync()
        log.info("shared state of %d guilds received", synced)
        setup = load_entry_point(spec.entry_point)(self.bot, self.ctx)
        if inspect.isawaitable(setup):
            await setup
        try:
            await self.bot.start(
                shard_ids=list(spec.shard_ids),
                shard_count=spec.shard_count,
                # The master's identify gate keeps the budget for all workers; hikari would
                # refuse to start at all where the gate makes shards wait for the reset.
                ignore_session_start_limit=True,
            )
            log.info("shards %s started", list(spec.shard_ids))
            await self.stopping.wait()
        finally:
            lag_probe.cancel()
            load_watch.cancel()
            serving.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.bot.close()
            self.link.connection.close()
        return 0

    # -- what hikari tells us --------------------------------------------------------------

    def _listen(self) -> None:
        bot = self.bot

        @bot.listen(hikari.ShardConnectedEvent)
        async def connected(event: hikari.ShardConnectedEvent) -> None:
            # Listeners run as tasks: READY may already have been handled.
            if self.states[event.shard.id] != "ready":
                self.states[event.shard.id] = "connecting"

        @bot.listen(hikari.ShardReadyEvent)
        async def ready(event: hikari.ShardReadyEvent) -> None:
            shard_id = event.shard.id
            self.states[shard_id] = "ready"
            guild_ids = [int(guild_id) for guild_id in event.unavailable_guilds]
            self.guild_counts[shard_id] = len(guild_ids)
            # Resumable from READY on: a crash before the first heartbeat still hands it over.
            self.link.send(
                ShardReady(
                    shard_id=shard_id,
                    session_id=event.session_id,
                    guild_ids=guild_ids,
                    seq=1,
                    resume_url=event.resume_gateway_url,
                )
            )

        @bot.listen(hikari.ShardResumedEvent)
        async def resumed(event: hikari.ShardResumedEvent) -> None:
            self.states[event.shard.id] = "ready"

        @bot.listen(hikari.ShardDisconnectedEvent)
        async def disconnected(event: hikari.ShardDisconnectedEvent) -> None:
            shard_id = event.shard.id
            if self.stopping.is_set():
                return
            self.states[shard_id] = "resuming"
            self.link.send(
                ShardDisconnect(
                    shard_ids=[shard_id], reason="gateway connection lost", resumable=True
                )
            )

    def _hand_over(self) -> None:
        """Leave the sessions to the next process: report the latest seqs, then vanish.

        Closing the websockets would end the sessions (hikari closes with 1000); a process that
        exits drops its connections without a close frame, and Discord keeps them resumable.
        """
        self.link.connection.send_batch_nowait([self._health(0)])
        logging.shutdown()
        os._exit(0)

    async def _wait_for_identify_grant(self, shard_id: int) -> None:
        """The identify hook: no IDENTIFY before the master's gate says so, nor after the grant
        expired (a loop busy with other shards' guilds may get to it late): then it asks again."""
        self.states[shard_id] = "waiting_identify"
        while True:
            request = IdentifyRequest(
                nonce=self.link.next_nonce(),
                deadline=time.monotonic() + IDENTIFY_WAIT,
                shard_id=shard_id,
            )
            try:
                grant: IdentifyGrant = await self.link.call(request)
            except RequestError as failure:
                if failure.code != "timeout":
                    raise
                log.info("shard %d still waits for its turn to identify", shard_id)
                continue
            if time.monotonic() < grant.expires_at:
                break
            log.warning("shard %d got to its grant after it expired; asking again", shard_id)
        self.states[shard_id] = "connecting"

    def _identify_sent(self, shard_id: int) -> None:
        self.link.send(IdentifySent(shard_id=shard_id, sent_at=time.monotonic()))

    # -- what the master tells us ------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            await self.link.serve(self._dispatch)
        finally:
            # The master is gone or closed the link: nobody supervises us any more.
            self.stopping.set()

    def _dispatch(self, message: AnyMessage) -> None:
        if isinstance(message, CommandExec):  # first: by far the most frequent
            self._start_command(message)
        elif isinstance(message, Heartbeat):
            # Answered from the reader itself: a blocked event loop shows as missed acks.
            self.link.send(self._health(message.nonce))
        elif isinstance(message, CommandBroadcast):
            self.commands.broadcast(message)
        elif isinstance(message, StateChanged | GuildSync):
            self.ctx.state.apply(message)
        elif isinstance(message, ShardDisconnect):
            log.info("master asks to disconnect shards %s: %s", message.shard_ids, message.reason)
            if message.resumable:
                self._hand_over()
            self.stopping.set()
        else:
            log.warning("unexpected %s from the master ignored", type(message).__name__)

    # -- health ------------------------------------------------------------------------------

    def _health(self, nonce: int) -> HeartbeatAck:
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

    async def _report_guild_loads(self) -> None:
        """Tell the master the moment a shard has all its guilds, not at the next heartbeat.

        Counted from the cache every ``LOAD_CHECK_INTERVAL``: a listener on every guild's
        arrival would have hikari build an event object for each.
        """
        # A shard that resumed gets no GUILD_CREATEs: its cache never fills.
        loaded = set(self.spec.sessions)
        deadline = time.monotonic() + LOAD_WATCH_LIMIT
        while len(loaded) < len(self.spec.shard_ids) and time.monotonic() < deadline:
            await asyncio.sleep(LOAD_CHECK_INTERVAL)
            health = self._health(0)
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

    async def _probe_loop_lag(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(LAG_PROBE_INTERVAL)
            self.loop_lag_ms = max(0.0, (time.monotonic() - started - LAG_PROBE_INTERVAL) * 1000)
