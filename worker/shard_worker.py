"""The shard worker process: hikari for a set of shards, the user's bot, and the master link.

Lifecycle (started by ``child.runtime``): hello with the master, bot code loaded
(``module:function`` called as ``function(bot, ctx)``), shards started (a process started
beside the running one by a rolling restart first stands by: STANDBY, then its shards when
SHARD_TAKE hands it their sessions); then it answers
heartbeats with its health, runs routed commands, and reports each shard's READY and
disconnects. It stops when the master says so (SHARD_DISCONNECT for all its shards) or the
link ends. Running the routed commands is ``shard_commands``'s, reporting the shards' health
``shard_health``'s: this module puts the process together and moves the shards' states as
hikari and the master's identify gate say.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import multiprocessing.connection
import os
import time
from collections.abc import Coroutine
from typing import Any

import hikari

from child.link import MasterLink, RequestError
from child.runtime import EXIT_UNUSABLE
from protocol import AnyMessage, shard_for_guild
from protocol.messages import (
    CatchUp,
    CommandBroadcast,
    CommandExec,
    Cutover,
    GuildSync,
    HandledReport,
    Heartbeat,
    IdentifyGrant,
    IdentifyRequest,
    IdentifySent,
    ShardDisconnect,
    ShardHandled,
    ShardReady,
    ShardRelease,
    ShardReleased,
    ShardTake,
    StateChanged,
    WorkerStandby,
)
from worker import shard_hooks
from worker.context import ShardContext
from worker.cutover import CutoverGate, Held
from worker.entry_points import load_entry_point
from worker.handled import HandledDispatches
from worker.shard_commands import ShardCommands
from worker.shard_health import WorkerHealth
from worker.spec import WorkerSpec

log = logging.getLogger("worker")

IDENTIFY_WAIT = 600.0  # one ask's deadline; a longer queue (a spent budget) is asked again
CLOSE_TIMEOUT = 5.0
# On a restart, how long the handlers running are given to finish (their replies to go out)
# before the sessions go to the next process; within the master's shutdown_timeout.
HANDOVER_DRAIN = 3.0
EXIT_LINK_LOST = 1


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
        if spec.rest_gate:
            shard_hooks.defer_rest_limits_to_the_gate(self.bot)
        # The shards this process serves: its spec's, as shards move in (SHARD_TAKE) and out
        # (SHARD_RELEASE); the context and the commands read the same set.
        self.shard_ids = set(spec.shard_ids)
        self.ctx = ShardContext(
            self.bot,
            link,
            worker_id=spec.worker_id,
            shard_ids=self.shard_ids,
            shard_count=spec.shard_count,
            request_timeout=spec.request_timeout,
            compute_timeout=spec.compute_timeout,
            user_cache=spec.user_cache,
        )
        self.health = WorkerHealth(spec, self.bot, link)
        # Written here, as hikari and the identify gate move each shard; read by the reports.
        self.states = self.health.states
        self.stopping = asyncio.Event()
        self.commands = ShardCommands(
            self.ctx, link, self.shard_ids, spec.shard_count, self.stopping
        )
        # Bound once: a COMMAND_EXEC, by far the most frequent message, then costs one lookup.
        self._start_command = self.commands.start
        self.handled = HandledDispatches(spec.sessions, self._report_handled)
        self.generation = CutoverGate(new=spec.new_generation)
        self._handing_over: asyncio.Task[None] | None = None
        self._taken: asyncio.Future[ShardTake] = asyncio.get_running_loop().create_future()
        self._moving: set[asyncio.Task[None]] = set()  # shards being taken or released

    async def run(self) -> int:
        spec = self.spec
        self._listen()
        shard_hooks.install(self._wait_for_identify_grant, self._identify_sent)
        shard_hooks.install_one_window()
        shard_hooks.install_dispatch_tracking(
            self.handled, self.generation, self.health.count_event
        )
        shard_hooks.install_close_watch(self._closed_for_good)
        serving = asyncio.create_task(self._serve())
        lag_probe = asyncio.create_task(self.health.probe_loop_lag())
        load_watch: asyncio.Task[None] | None = None
        # The shared state of our guilds arrives before the bot code runs or a shard connects.
        synced = await self.ctx.state.sync()
        log.info("shared state of %d guilds received", synced)
        setup = load_entry_point(spec.entry_point)(self.bot, self.ctx)
        if inspect.isawaitable(setup):
            await setup
        stopped = asyncio.create_task(self.stopping.wait())
        starting: asyncio.Task[None] | None = None
        try:
            sessions = spec.sessions
            if spec.standby:
                take = await self._stand_by(stopped)
                if take is None:
                    return 0  # stopped before it took the shards
                sessions = take.sessions
                self.handled.resume(sessions)
                self.health.resume(sessions, take.guild_counts)
            if sessions:
                log.info(
                    "resuming sessions: %s",
                    ", ".join(f"shard {i} from seq {s.seq}" for i, s in sorted(sessions.items())),
                )
                shard_hooks.install_resume(sessions, bot_user_id(spec.token))
            load_watch = asyncio.create_task(self.health.report_guild_loads())
            # A stop may come while hikari still starts the shards (waiting for grants, or for
            # a gateway that does not answer, in its reconnect back-off): it must not wait.
            starting = asyncio.create_task(self._start_shards())
            await asyncio.wait({starting, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # hikari's start failed: its error ends the worker
                await stopped
        finally:
            stopped.cancel()
            lag_probe.cancel()
            if load_watch is not None:
                load_watch.cancel()
            # A graceful stop lets the handlers running finish (their replies go out) first.
            await self._finish_handlers("stopped")
            # The bot first, while the link still serves: a shard waiting for its identify
            # grant is cancelled by the close, rather than failed by the link's end.
            with contextlib.suppress(TimeoutError, hikari.ComponentStateConflictError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self.bot.close()  # not started yet, it has nothing to close
            if starting is not None:
                starting.cancel()  # ended by the close, unless it had not begun
            self.stopping.set()  # ending on purpose: the link's end is ours
            serving.cancel()
            self.link.connection.close()
        return 0

    async def _stand_by(self, stopped: asyncio.Task[bool]) -> ShardTake | None:
        """Tell the master the bot code is loaded; wait for the shards (None: told to stop)."""
        self.link.send(WorkerStandby())
        log.info("bot code loaded; standing by for shards %s", list(self.spec.shard_ids))
        waits: set[asyncio.Future[Any]] = {self._taken, stopped}
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return self._taken.result() if self._taken.done() else None

    async def _start_shards(self) -> None:
        spec = self.spec
        with shard_hooks.starting_in_one_window(len(spec.shard_ids)):
            await self.bot.start(
                shard_ids=list(spec.shard_ids),
                shard_count=spec.shard_count,
                # The master's identify gate keeps the budget for all workers; hikari would
                # refuse to start at all where the gate makes shards wait for the reset.
                ignore_session_start_limit=True,
            )
        log.info("shards %s started", list(spec.shard_ids))

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
            self.health.guild_counts[shard_id] = len(guild_ids)
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

    def _run_again(self, held: Held) -> None:
        event_name, shard_id, payload = held
        shard_hooks.dispatch_again(self.bot, shard_id, event_name, payload)

    def _closed_for_good(self, shard_id: int, code: int, reason: str) -> None:
        log.error("Discord closed shard %d for good: %d %s", shard_id, code, reason)
        self.states[shard_id] = "down"
        message = f"closed by Discord with {code} ({reason})"
        self.link.send(ShardDisconnect(shard_ids=[shard_id], reason=message, close_code=code))

    def _report_handled(self, shards: list[ShardHandled], created: list[int]) -> None:
        self.link.send(HandledReport(shards=shards, created=created))

    async def _hand_over(self) -> None:
        """Leave the sessions to the next process: finish what bot code is handling, report
        what was handled and the latest seqs, then vanish.

        What arrives from now on runs no listener: it is past what the ledger shows handled, so
        Discord replays it to the next process. Closing the websockets would end the sessions
        (hikari closes with 1000); a process that exits drops its connections without a close
        frame, and Discord keeps them resumable.
        """
        self.handled.closed = True
        await self._finish_handlers("handed over")
        self.handled.flush()
        await asyncio.sleep(0)  # what is queued (the report among it) goes out with this turn
        self.link.connection.send_batch_nowait([self.health.ack(0)])
        logging.shutdown()
        os._exit(0)

    # -- shards moving in and out ------------------------------------------------------------

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._moving.add(task)
        task.add_done_callback(self._moving.discard)

    async def _take(self, take: ShardTake) -> None:
        """Start shards moved here from another worker, resuming their sessions."""
        fresh = [shard_id for shard_id in take.shard_ids if shard_id not in self.shard_ids]
        log.info("taking shards %s (resuming %s)", fresh, sorted(take.sessions))
        self.handled.resume(take.sessions)
        self.health.resume(take.sessions, take.guild_counts)
        shard_hooks.install_resume(take.sessions, bot_user_id(self.spec.token))
        for shard_id in fresh:
            self.shard_ids.add(shard_id)
            self.states[shard_id] = "starting"
        outcomes = await asyncio.gather(
            *(
                shard_hooks.start_shard(self.bot, shard_id, self.spec.shard_count)
                for shard_id in fresh
            ),
            return_exceptions=True,
        )
        for shard_id, outcome in zip(fresh, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("shard %d could not start: %r", shard_id, outcome)
                self.states[shard_id] = "down"
                reason = f"could not start: {outcome!r}"
                self.link.send(ShardDisconnect(shard_ids=[shard_id], reason=reason))

    async def _release(self, shard_ids: list[int]) -> None:
        for shard_id in shard_ids:
            await self._release_one(shard_id)

    async def _release_one(self, shard_id: int) -> None:
        """Hand a shard over to another worker: its handlers finish and are reported, then it
        stops with its session open, which the master is told."""
        if shard_id not in self.shard_ids:
            self.link.send(ShardReleased(shard_id=shard_id))
            return
        self.shard_ids.discard(shard_id)
        self.handled.release(shard_id)
        await self._finish_handlers(f"shard {shard_id} handed over", shard_id)
        self.handled.flush()  # before SHARD_RELEASED: the next owner skips what they did
        session = await shard_hooks.detach_shard(self.bot, shard_id)
        self.health.forget(shard_id)
        shard_count = self.spec.shard_count
        dropped = self.ctx.state.forget_guilds(
            lambda guild_id: shard_for_guild(guild_id, shard_count) == shard_id
        )
        log.info(
            "shard %d released at seq %s (%d state entries dropped)",
            shard_id,
            session.seq if session is not None else None,
            dropped,
        )
        self.link.send(ShardReleased(shard_id=shard_id, session=session))

    async def _finish_handlers(self, then: str, shard_id: int | None = None) -> None:
        """Give the listeners running (of one shard, if given) up to ``HANDOVER_DRAIN``."""
        unfinished = await self.handled.drain(HANDOVER_DRAIN, shard_id)
        if unfinished:
            log.warning(
                "%d handlers still running after %.0f s: %s", unfinished, HANDOVER_DRAIN, then
            )

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
        except asyncio.CancelledError:
            raise  # the process ends on its own: its end says why
        except Exception as error:
            log.warning("the link to the master failed: %r", error)
        if not self.stopping.is_set():
            # The link ended without a stop: the master replaces this process (its link
            # broke) or is gone. Closing the websockets would end the sessions its next
            # process resumes; leave them open, as a process that dies does.
            log.warning("the link to the master ended: exiting, the sessions left open")
            logging.shutdown()
            os._exit(EXIT_LINK_LOST)

    def _dispatch(self, message: AnyMessage) -> None:
        if isinstance(message, CommandExec):  # first: by far the most frequent
            self._start_command(message)
        elif isinstance(message, Heartbeat):
            # Answered from the reader itself: a blocked event loop shows as missed acks.
            self.link.send(self.health.ack(message.nonce))
        elif isinstance(message, CommandBroadcast):
            self.commands.broadcast(message)
        elif isinstance(message, StateChanged | GuildSync):
            self.ctx.state.apply(message)
        elif isinstance(message, ShardTake):
            if self.spec.standby and not self._taken.done():
                self._taken.set_result(message)
            else:
                self._in_background(self._take(message))
        elif isinstance(message, Cutover):
            log.info(
                "cutover at %.3f: %s generation",
                message.at,
                "new" if self.spec.new_generation else "old",
            )
            self.generation.cut(message.at)
        elif isinstance(message, CatchUp):
            missed = self.generation.catch_up(set(message.handled), self._run_again)
            log.info(
                "caught up: %d messages and interactions the old generation did not handle "
                "(%d set aside were dropped)",
                missed,
                self.generation.dropped,
            )
        elif isinstance(message, ShardRelease):
            self._in_background(self._release(message.shard_ids))
        elif isinstance(message, ShardDisconnect):
            log.info("master asks to disconnect shards %s: %s", message.shard_ids, message.reason)
            if not message.resumable:
                self.stopping.set()
            elif self._handing_over is None:
                self._handing_over = asyncio.create_task(self._hand_over())
        else:
            log.warning("unexpected %s from the master ignored", type(message).__name__)
