"""The message catalogue: every kind that crosses a pipe between the master and its children.

Each kind is a msgspec Struct tagged by ``kind`` (the catalogue's name, e.g. ``"COMMAND_EXEC"``),
so one decoder validates any frame into exactly one typed message. Ids are snowflakes (unsigned
64-bit ints). Every request carries a ``nonce`` (unique per sender) and a ``deadline``; its answer
(``ReplyOk``, ``ReplyError``, ``IdentifyGrant``, ``ComputeResult`` or ``HeartbeatAck``) carries the
same nonce, and every request gets exactly one answer.

Deadlines are absolute ``time.monotonic()`` seconds. All processes of one sharder run on one host,
where the monotonic clock is shared, so a deadline means the same instant in every process.
"""

from __future__ import annotations

import time
import typing
from typing import Annotated, Any, Literal

import msgspec

PROTOCOL_VERSION = 4

Snowflake = Annotated[int, msgspec.Meta(ge=0)]
ShardId = Annotated[int, msgspec.Meta(ge=0)]
Nonce = Annotated[int, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]

Role = Literal["master", "shard_worker", "compute_worker", "rest_gate"]
ErrorCode = Literal[
    "timeout",  # the deadline passed before an answer came
    "target_down",  # the process that owns the target is dead or restarting
    "unknown_target",  # no process owns the target (bad guild/shard id, failed worker)
    "no_handler",  # the target has no handler registered under that name
    "handler_failed",  # the handler raised; the message carries its error
    "busy",  # a bounded queue is full; retry later
    "limit",  # the work passed a limit of its own (a compute task's CPU time)
    "invalid",  # the request itself is malformed or names an unknown field
    "shutting_down",  # the receiver is stopping and takes no new work
]
ShardState = Literal["starting", "waiting_identify", "connecting", "ready", "resuming", "down"]
StateScope = Literal["guild_config", "member_activity", "permissions", "user_data"]


# A deadline is an instant of the monotonic clock (seconds since boot): never past this, which
# keeps infinities and NaN off the wire, where they would break every deadline timer they reach.
DEADLINE_MAX = float(2**40)
Deadline = Annotated[float, msgspec.Meta(ge=0.0, le=DEADLINE_MAX)]
MAX_TIMEOUT = 86_400.0  # the longest a caller may wait for one answer: a day


def deadline_in(seconds: float) -> float:
    """The deadline ``seconds`` from now, in the catalogue's clock; ``ValueError`` unless
    ``seconds`` is a finite number above 0, up to ``MAX_TIMEOUT``."""
    if not 0.0 < seconds <= MAX_TIMEOUT:  # NaN fails this too
        raise ValueError(f"a timeout is a number of seconds above 0 and up to a day: {seconds!r}")
    return time.monotonic() + seconds


class Message(msgspec.Struct, tag_field="kind", kw_only=True, omit_defaults=True):
    """Base of every kind; never sent itself."""


class Request(Message):
    """A message that expects exactly one answer carrying the same nonce."""

    nonce: Nonce
    deadline: Deadline


# -- session ------------------------------------------------------------------------------------


class Hello(Message, tag="HELLO"):
    """First frame each way; a version mismatch ends the connection."""

    version: int
    role: Role
    worker_id: int
    pid: int
    # Master -> child: the high bits of every nonce the child makes (see ``child.link``), new
    # for every process the master starts; 0 from a child.
    nonce_origin: Annotated[int, msgspec.Meta(ge=0, lt=2**23)] = 0


class Heartbeat(Request, tag="HEARTBEAT"):
    """Master -> child liveness ping."""

    sent_at: float


# Event types a shard's counts are kept apart for; the rest are counted as OTHER_EVENTS.
EVENT_TYPES_MAX = 64
OTHER_EVENTS = "OTHER"
EventType = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_]{1,64}$")]


class ShardHealth(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One shard's condition as its worker sees it, plus what is needed to resume its session."""

    shard_id: ShardId
    state: ShardState
    guilds: int = 0
    guilds_loaded: int = 0  # of those, in the worker's cache (their GUILD_CREATE arrived)
    latency_ms: float | None = None
    session_id: str | None = None
    seq: int | None = None
    resume_url: str | None = None
    # Dispatches received by this process for the shard, by event type, since it started.
    events: Annotated[
        dict[EventType, Annotated[int, msgspec.Meta(ge=0)]],
        msgspec.Meta(max_length=EVENT_TYPES_MAX),
    ] = {}


# Handled dispatches a shard keeps past its floor: past this, the oldest unhandled one is given
# up on (a handler that never ends must not grow the ledger, nor the replay, without bound).
HANDLED_ABOVE_MAX = 4096
HANDLED_CREATED_MAX = 4096  # snowflakes in one report; more go in the next
CATCH_UP_MAX = 500_000  # snowflakes an old generation handled during a reshard, kept at most


class ShardHandled(msgspec.Struct, kw_only=True, array_like=True):
    """Which dispatches of one gateway session bot code has finished handling."""

    shard_id: ShardId
    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    floor: Annotated[int, msgspec.Meta(ge=0)]  # every seq up to this one is handled
    above: Annotated[list[int], msgspec.Meta(max_length=HANDLED_ABOVE_MAX)] = []  # and these


class HandledReport(Message, tag="HANDLED"):
    """Child -> master: the shards whose handled dispatches moved on, as they stand now.

    The master keeps the latest of each (its ledger): a session resumed in another process
    skips the replayed dispatches that were handled, so bot code sees each exactly once.
    """

    shards: list[ShardHandled]
    # The messages and interactions (their snowflakes) whose handling ended since the last
    # report: a reshard's new generation runs those of the old one's that it did not.
    created: Annotated[list[Snowflake], msgspec.Meta(max_length=HANDLED_CREATED_MAX)] = []


class HeartbeatAck(Message, tag="HEARTBEAT_ACK"):
    """Child -> master answer to a heartbeat, carrying the child's health."""

    nonce: Nonce
    loop_lag_ms: float
    rss_bytes: int
    events: int = 0  # gateway events received since the child started
    shards: list[ShardHealth] = []


# -- answers ------------------------------------------------------------------------------------


class ReplyOk(Message, tag="REPLY_OK"):
    nonce: Nonce
    payload: Any = None


class ReplyError(Message, tag="REPLY_ERROR"):
    nonce: Nonce
    code: ErrorCode
    message: str


# -- gateway sessions ---------------------------------------------------------------------------


class IdentifyRequest(Request, tag="IDENTIFY_REQUEST"):
    """A shard asks the master's identify gate for permission to IDENTIFY."""

    shard_id: ShardId


class IdentifyGrant(Message, tag="IDENTIFY_GRANT"):
    """The gate's permission: the shard may IDENTIFY now, and until ``expires_at`` (the
    monotonic clock, which the master and its children share); later, it asks again."""

    nonce: Nonce
    shard_id: ShardId
    expires_at: float


class IdentifySent(Message, tag="IDENTIFY_SENT"):
    """Worker -> master: the shard sent its IDENTIFY at ``sent_at``; its bucket's window runs
    from then."""

    shard_id: ShardId
    sent_at: float


class ShardReady(Message, tag="SHARD_READY"):
    """Worker -> master: a shard is serving these guilds, in a session resumable from ``seq``."""

    shard_id: ShardId
    session_id: str
    guild_ids: list[Snowflake] = []
    seq: int | None = None
    resume_url: str | None = None


class Session(msgspec.Struct, frozen=True):
    """What a shard needs to RESUME a gateway session, as hikari keeps it."""

    session_id: str
    seq: int  # where the RESUME starts: Discord replays every dispatch after it
    resume_url: str
    handled: frozenset[int] = frozenset()  # replayed dispatches bot code already handled
    received: int = 0  # the last seq the earlier process received: replays run up to it


class WorkerStandby(Message, tag="STANDBY"):
    """Worker -> master: a process started to take a worker's place (a rolling restart) has
    loaded the bot code and the shared state, and waits for ``SHARD_TAKE``."""


class ShardTake(Message, tag="SHARD_TAKE"):
    """Master -> worker: start shards, resuming these sessions (the others identify).

    To a worker on standby: its earlier process is gone, its shards are its own now. To a
    running worker: start ``shard_ids`` too (moved to it from another worker).
    """

    shard_ids: list[ShardId] = []
    sessions: dict[ShardId, Session] = {}
    guild_counts: dict[ShardId, int] = {}  # of those shards, as last known


class ShardRelease(Message, tag="SHARD_RELEASE"):
    """Master -> worker: stop these shards without ending their sessions (they move to another
    worker); answered by a ``SHARD_RELEASED`` for each."""

    shard_ids: list[ShardId]


class ShardReleased(Message, tag="SHARD_RELEASED"):
    """Worker -> master: a shard is stopped, its handlers done and reported (``HANDLED``
    before this); its session as it stands, for the next owner to resume."""

    shard_id: ShardId
    session: Session | None = None


class Cutover(Message, tag="CUTOVER"):
    """Master -> worker, to both generations of a live reshard: from the wall-clock instant
    ``at`` on (by their snowflakes for messages and interactions), the new generation handles
    the events and the old one no longer does (``worker.cutover``)."""

    at: float


class CatchUp(Message, tag="CATCH_UP"):
    """Master -> worker of a reshard's new generation, once the old one is gone: the messages
    and interactions it handled; run those from before the cutover that it did not."""

    handled: Annotated[list[Snowflake], msgspec.Meta(max_length=CATCH_UP_MAX)] = []


class ShardDisconnect(Message, tag="SHARD_DISCONNECT"):
    """Worker -> master: a shard lost its connection. Master -> worker: disconnect these shards.

    ``resumable`` says whether the gateway session is kept for another process to resume.
    """

    shard_ids: list[ShardId]
    reason: str
    resumable: bool = False
    close_code: int | None = None  # Discord's, when it ended the session for good (4011, ...)


# -- routed commands ----------------------------------------------------------------------------


class CommandExec(Request, tag="COMMAND_EXEC"):
    """Run the handler registered as ``name`` on the shard that owns ``guild_id``."""

    guild_id: Snowflake
    name: Name
    payload: Any = None


class CommandBroadcast(Request, tag="COMMAND_BROADCAST"):
    """Run the handler registered as ``name`` on every shard.

    Its ``ReplyOk`` payload is a list of ``ShardOutcome``, one per shard, failures included.
    """

    name: Name
    payload: Any = None


class ShardOutcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One shard's part of a broadcast's answer: its handler's value, or why there is none."""

    shard_id: ShardId
    ok: bool
    value: Any = None
    code: ErrorCode | None = None
    message: str = ""


# -- shared state -------------------------------------------------------------------------------


class StateUpdate(Request, tag="STATE_UPDATE"):
    """Worker -> master: merge a change into shared state; acknowledged once durable.

    ``changes["delta"]`` is the change as a merge state (``protocol.state.encode_state``).
    """

    scope: StateScope
    changes: dict[str, Any]
    guild_id: Snowflake = 0
    user_id: Snowflake = 0


class StateSync(Request, tag="STATE_SYNC"):
    """Worker -> master: send the shared state my shards hold; answered once all of it is sent."""


class StateFetch(Request, tag="STATE_FETCH"):
    """Worker -> master: a user's data, which a worker reads on demand rather than holds for
    every user. Answered ``{"version": int, "data": bytes | None}`` (None: never written)."""

    user_id: Snowflake


class GuildSync(Message, tag="GUILD_SYNC"):
    """Master -> worker: the full shared state of one guild, before it takes routed traffic.

    ``state`` maps ``"scope:key"`` to ``[version, data]``.
    """

    guild_id: Snowflake
    version: int
    state: dict[str, Any]


class StateChanged(Message, tag="STATE_CHANGED"):
    """Master -> worker: one key's merged state at ``version``, after a durable change."""

    scope: StateScope
    key: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    version: int
    data: bytes


# -- compute ------------------------------------------------------------------------------------


class ComputeRequest(Request, tag="COMPUTE_REQUEST"):
    """Run compute task ``task`` ("math", "jumbo", or one the bot registered) on ``args``."""

    task: Name
    args: dict[str, Any]


class ComputeResult(Message, tag="COMPUTE_RESULT"):
    """A finished compute task: a value, and for images the encoded bytes and their type."""

    nonce: Nonce
    value: Any = None
    data: bytes | None = None
    content_type: str | None = None


# -- the REST gate ------------------------------------------------------------------------------


class RouteReport(msgspec.Struct, kw_only=True):
    """One REST route's counts at the gate, since it started."""

    route: str  # "POST /channels/{channel_id}/messages"
    requests: int
    queued_ms: float  # total time requests waited for their turn
    queued_max_ms: float
    got_429: int
    invalid: int  # 401, 403 and non-shared 429 answers


class RestGateReport(Message, tag="REST_GATE_REPORT"):
    """Gate -> master, with each heartbeat's answer: what went through it."""

    requests: int
    got_429: int
    invalid_10min: int  # invalid answers in Discord's ten-minute ban window
    refused: int  # requests the gate answered itself: no turn before their deadline
    routes: list[RouteReport] = []


AnyMessage = (
    Hello
    | Heartbeat
    | HeartbeatAck
    | ReplyOk
    | ReplyError
    | IdentifyRequest
    | IdentifyGrant
    | IdentifySent
    | ShardReady
    | ShardDisconnect
    | CommandExec
    | CommandBroadcast
    | StateUpdate
    | StateSync
    | StateFetch
    | GuildSync
    | StateChanged
    | ComputeRequest
    | ComputeResult
    | RestGateReport
    | HandledReport
    | WorkerStandby
    | ShardTake
    | ShardRelease
    | ShardReleased
    | Cutover
    | CatchUp
)

CATALOGUE: dict[str, type[Message]] = {
    cls.__struct_config__.tag: cls for cls in typing.get_args(AnyMessage)
}
