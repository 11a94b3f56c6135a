"""The shard workers as a kind of child: their specs, their link, their reports, their exits.

A worker's link is read by the router; what it says that is not a request comes back here
(the router's ``WorkerReports``): its shards' READY and disconnects, which set the worker's
state, and its IDENTIFY requests and sends, which go through the identify gate. A worker that
exits takes its routes and its queued compute tasks with it, and gives up its place in the
identify queues; one that dies right after taking sessions over starts the next afresh.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection

from protocol import Connection, RoutingTable
from protocol.messages import (
    HeartbeatAck,
    IdentifyGrant,
    IdentifyRequest,
    IdentifySent,
    ReplyError,
    ShardDisconnect,
    ShardHealth,
    ShardReady,
    ShardRelease,
    ShardReleased,
    ShardState,
    ShardTake,
    WorkerStandby,
)
from sharder.compute_pool import ComputePool
from sharder.config import Config
from sharder.identify import IdentifyGate
from sharder.incidents import INCIDENTS
from sharder.kinds import ChildKind, Discord
from sharder.lifecycle import ChildHandle
from sharder.measures import MEASURES
from sharder.router import Router
from sharder.state_service import StateService
from sharder.status import ShardStatus, WorkerStatus
from sharder.workers import RestGateHandle, StandbyHandle, WorkerHandle
from worker.spec import Session, WorkerSpec

log = logging.getLogger("sharder.supervisor")

# How often a worker refreshes its liveness stamps, per heartbeat interval: a stopped process
# is seen within a quarter beat of the heartbeat_misses'.
LIVENESS_STAMPS_PER_BEAT = 4
POISON_WINDOW = 10.0  # a process dying this soon after a handover drops the sessions
SHARDING_REQUIRED = 4011  # Discord's close code: a shard holds too many guilds


class ShardWorkers(ChildKind[WorkerHandle]):
    def __init__(
        self,
        table: RoutingTable,
        by_id: dict[int, WorkerHandle],
        config: Config,
        log_level: str,
        *,
        discord: Discord,
        identify: IdentifyGate,
        state: StateService,
        pool: ComputePool,
        rest_gate: RestGateHandle | None,
        on_heartbeat_ack: Callable[[ChildHandle, HeartbeatAck], None],
        wake: Callable[[], None],
        sharding_required: Callable[[str], None],
    ) -> None:
        """``sharding_required(why)``: Discord asked for more shards (close code 4011)."""
        super().__init__(list(by_id.values()), config, log_level)
        self.by_id = by_id
        self.discord = discord
        self.identify = identify
        self.pool = pool
        self.rest_gate = rest_gate
        self.on_heartbeat_ack = on_heartbeat_ack
        self.wake = wake
        self.sharding_required = sharding_required
        self.state = state
        self.router = Router(table, by_id, self, state, pool)

    # -- as a kind of child ----------------------------------------------------------------------

    def start_arguments(self, handle: WorkerHandle) -> tuple[object, ...]:
        supervisor = self.config.supervisor
        standby = isinstance(handle, StandbyHandle)
        # A standby is handed the sessions when it takes over (SHARD_TAKE), not at its start.
        sessions = {} if standby else self._sessions(handle)
        handle.spawned_with_sessions = bool(sessions)
        gate = self.rest_gate
        spec = WorkerSpec(
            worker_id=handle.id,
            shard_ids=tuple(handle.shard_ids),
            shard_count=handle.shard_count,
            token=self.discord.token,
            api_url=(
                # The gate takes its lanes in turn; a reshard's new workers share the old ones'.
                f"{gate.url}/{gate.secret}/w/{handle.id % gate.lanes}/api/v10"
                if gate is not None
                else self.discord.api_url
            ),
            rest_gate=gate is not None,
            entry_point=self.config.bot.entry_point,
            intents=self.discord.intents,
            request_timeout=supervisor.request_timeout,
            compute_timeout=self.config.compute.task_timeout,
            user_cache=self.config.state.user_cache,
            liveness=handle.liveness,
            liveness_period=supervisor.heartbeat_interval / LIVENESS_STAMPS_PER_BEAT,
            standby=standby,
            new_generation=handle.awaiting_cutover,
            sessions=sessions,
            guild_counts=dict(handle.guild_counts),
        )
        return (self.child_start("worker.shard_worker:serve", handle.label), spec)

    def _sessions(
        self, handle: WorkerHandle, shard_ids: Collection[int] | None = None
    ) -> dict[int, Session]:
        supervisor = self.config.supervisor
        if not supervisor.resume_sessions:
            return {}
        return handle.sessions_to_resume(supervisor.replay_margin, shard_ids)

    # -- shards moving between workers (``moves``) ---------------------------------------------

    def release(self, handle: WorkerHandle, shard_id: int) -> None:
        """Ask the worker to stop the shard, keeping its session (SHARD_RELEASED answers)."""
        assert handle.connection is not None
        handle.connection.send_batch_nowait([ShardRelease(shard_ids=[shard_id])])

    def reassign(self, source: WorkerHandle, target: WorkerHandle, shard_id: int) -> None:
        """The shard serves from ``target`` from now on: routes, session and handled record
        move over; the target gets the state of the shard's guilds, then SHARD_TAKE."""
        self.router.table.move(shard_id, target.id)
        source.released.discard(shard_id)
        source.hand_shard_to(target, shard_id)
        self.identify.forget(shard_id, source.generation)
        guilds = target.guild_counts.get(shard_id, 0)
        target.set_shard_state(
            shard_id, ShardHealth(shard_id=shard_id, state="resuming", guilds=guilds)
        )
        take = ShardTake(
            shard_ids=[shard_id],
            sessions=self._sessions(target, [shard_id]),
            guild_counts={shard_id: guilds} if guilds else {},
        )
        self.state.sync_shard(target, shard_id, then=take)

    def connected(self, handle: WorkerHandle, connection: Connection) -> None:
        handle.transition("starting")
        connection.deliver_to(self.router.receiver(handle))

    def ask_to_stop(self, handle: WorkerHandle, reason: str, resumable: bool) -> None:
        """SHARD_DISCONNECT for all its shards: it ends them (keeping the sessions to hand over
        if ``resumable``) and exits."""
        if handle.connection is not None and handle.connection.is_open:
            message = ShardDisconnect(
                shard_ids=list(handle.shard_ids), reason=reason, resumable=resumable
            )
            handle.connection.send_batch_nowait([message])

    def forget(self, handle: WorkerHandle) -> None:
        """A worker without a process retired by a reshard: gone for good."""
        for shard_id in handle.shard_ids:
            self.identify.forget(shard_id, handle.generation)
        del self.by_id[handle.id]

    def successor(self, handle: WorkerHandle) -> WorkerHandle | None:
        standby = handle.standby
        if standby is None or not standby.standing_by or not standby.serving:
            return None
        handle.standby = None
        return standby

    def took_over(self, handle: WorkerHandle) -> None:
        """Its standby's process runs for it now: it is handed the sessions, and starts."""
        assert handle.connection is not None
        self.connected(handle, handle.connection)
        sessions = self._sessions(handle)
        handle.spawned_with_sessions = bool(sessions)
        take = ShardTake(sessions=sessions, guild_counts=dict(handle.guild_counts))
        handle.connection.send_batch_nowait([take])

    def exited(self, handle: WorkerHandle, exitcode: int | None) -> bool:
        if isinstance(handle, StandbyHandle):
            if handle.worker.standby is handle:
                handle.worker.standby = None
            return False  # it served nothing: nobody waits on it
        self.router.worker_down(handle.id)
        self.pool.origin_down(handle.id)
        if handle.temporary:  # a generation retired or dropped by a reshard
            self.forget(handle)
        else:
            for shard_id in handle.shard_ids:
                self.identify.forget(shard_id, handle.generation)
        return False

    def crashed(self, handle: WorkerHandle, lived: float) -> None:
        if handle.spawned_with_sessions and lived < POISON_WINDOW:
            # Died right after taking the sessions over: what Discord replayed may be what
            # killed it, and would again. The next process starts new sessions.
            log.warning(
                "worker %d died %.1f s after resuming; its next start identifies", handle.id, lived
            )
            handle.forget_sessions()

    # -- what workers report (the router's WorkerReports) --------------------------------------

    def on_standby(self, handle: WorkerHandle, standby: WorkerStandby) -> None:
        if not isinstance(handle, StandbyHandle):
            log.warning("worker %d said STANDBY, which only a standby says", handle.id)
            return
        log.info("%s loaded the bot code (%.1f s)", handle, time.monotonic() - handle.spawned_at)
        handle.standing_by = True
        self.wake()

    def on_shard_released(self, handle: WorkerHandle, released: ShardReleased) -> None:
        shard_id, session = released.shard_id, released.session
        if shard_id not in handle.shard_ids:
            log.warning("worker %d released shard %d, which is not its own", handle.id, shard_id)
            return
        log.info("shard %d released by worker %d", shard_id, handle.id)
        if session is not None:  # where the next owner resumes it: the latest there is
            handle.remember_session(
                ShardHealth(
                    shard_id=shard_id,
                    state="resuming",
                    session_id=session.session_id,
                    seq=session.seq,
                    resume_url=session.resume_url,
                )
            )
        handle.released.add(shard_id)
        self.wake()

    def on_shard_ready(self, handle: WorkerHandle, ready: ShardReady) -> None:
        log.info(
            "shard %d ready on worker %d (%d guilds)",
            ready.shard_id,
            handle.id,
            len(ready.guild_ids),
        )
        health = ShardHealth(
            shard_id=ready.shard_id,
            state="ready",
            guilds=len(ready.guild_ids),
            session_id=ready.session_id,
            seq=ready.seq,
            resume_url=ready.resume_url,
        )
        handle.set_shard_state(ready.shard_id, health)
        handle.remember_session(health)
        self.wake()

    def on_shard_disconnect(self, handle: WorkerHandle, disconnect: ShardDisconnect) -> None:
        for shard_id in disconnect.shard_ids:
            log.warning("shard %d on worker %d: %s", shard_id, handle.id, disconnect.reason)
            INCIDENTS.record(
                "disconnect", handle.label, f"shard {shard_id} on {handle}: {disconnect.reason}"
            )
            previous = handle.shards.get(shard_id)
            guilds = previous.guilds if previous is not None else 0
            state: ShardState = "resuming" if disconnect.resumable else "down"
            health = ShardHealth(shard_id=shard_id, state=state, guilds=guilds)
            handle.set_shard_state(shard_id, health)
        if disconnect.close_code == SHARDING_REQUIRED and not handle.awaiting_cutover:
            self.sharding_required(
                f"Discord closed shard {disconnect.shard_ids[0]} of {handle.shard_count} with "
                f"{SHARDING_REQUIRED} (sharding required)"
            )
        self.wake()

    def on_identify_request(self, handle: WorkerHandle, request: IdentifyRequest) -> None:
        connection = handle.connection
        shard_id = request.shard_id
        if connection is None:
            return  # gone already: nobody to answer
        if shard_id not in handle.shard_ids:
            reason = f"shard {shard_id} is not worker {handle.id}'s (it has {handle.shard_ids})"
            log.warning("refused an IDENTIFY: %s", reason)
            MEASURES.identify_refused += 1
            INCIDENTS.record("identify_refused", handle.label, f"refused an IDENTIFY: {reason}")
            connection.send_soon(ReplyError(nonce=request.nonce, code="invalid", message=reason))
            return

        def grant(expires_at: float) -> None:
            if connection.is_open:
                connection.send_soon(
                    IdentifyGrant(nonce=request.nonce, shard_id=shard_id, expires_at=expires_at)
                )

        self.identify.request(shard_id, grant, handle.generation)

    def on_identify_sent(self, handle: WorkerHandle, sent: IdentifySent) -> None:
        if sent.shard_id in handle.shard_ids:
            # Never later than now: a time to come would hold the bucket back for nothing.
            self.identify.sent(
                sent.shard_id, min(sent.sent_at, time.monotonic()), handle.generation
            )


def worker_statuses(
    handles: list[WorkerHandle], busy_after: float, identify: IdentifyGate | None
) -> tuple[list[WorkerStatus], list[ShardStatus]]:
    """Each worker's status and each shard's, shards in order; ``busy_after``: how long a loop
    must not have turned for its worker to show busy."""
    workers = [handle.worker_status(busy_after) for handle in handles]
    shards = sorted(
        (shard for handle in handles for shard in handle.shard_statuses()),
        key=lambda shard: shard.id,
    )
    if identify is not None:
        generation = handles[0].generation if handles else 0
        for shard in shards:
            shard.identify_queue = identify.position(shard.id, generation)
    return workers, shards
