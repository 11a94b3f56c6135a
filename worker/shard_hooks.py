"""Hooks into hikari's shards: IDENTIFY waits for the master's grant, a shard handed over from a
dead or restarted worker RESUMEs its session instead of starting a new one, and a worker's shards
start together rather than in hikari's 5 s windows; behind the REST gate, hikari's own
rate-limit buckets step aside; and every dispatch is followed to the end of its listeners.

hikari has neither hook; both touch private attributes of ``GatewayShardImpl``, so hikari is
pinned to one minor version, ``check_hikari`` runs at start-up, and a test fails if an upgrade
moves what they need.

A shard IDENTIFYs through ``GatewayShardImpl._send_json`` inside
``_connect``, right after HELLO, whenever it has no session to resume: its first connection,
and after INVALID_SESSION, a fatal close or a refused RESUME. Gating that send (not the
connect) keeps the time between grant and IDENTIFY to a pipe round trip, however long the
websocket handshake took. The shard's heartbeats run meanwhile, so a long wait in the queue
does not time the connection out.

A shard RESUMEs instead of IDENTIFYing when it starts with ``_session_id``, ``_seq``,
``_resume_gateway_url`` and ``_user_id`` set (tried across processes: the new process starts
with an empty cache). ``install_resume`` sets them as the shard starts, and lets the events
Discord replays before RESUMED through (hikari would drop them).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import attrs  # hikari's own dependency: its gateway info is an attrs class
import hikari
from hikari.impl.buckets import RESTBucketManager
from hikari.impl.event_manager_base import EventManagerBase
from hikari.impl.gateway_bot import GatewayBot
from hikari.impl.rest import RESTClientImpl
from hikari.impl.shard import GatewayShardImpl
from hikari.internal.routes import CompiledRoute

from worker.cutover import created_id
from worker.handled import replaying
from worker.spec import Session

SUPPORTED_HIKARI = "2.7."
IDENTIFY = 2
RESUMABLE_CLOSE = 3000  # a close code after which Discord keeps the session resumable
SESSION_SLOTS = frozenset({"_shard_id", "_session_id", "_seq", "_resume_gateway_url", "_user_id"})
Acquire = Callable[[int], Awaitable[None]]


class UnsupportedHikari(RuntimeError):
    pass


@functools.cache
def check_hikari() -> None:
    """Fail loudly if this hikari is not the one the hook was written against.

    Read once, before any hook replaces what it reads: the hooks' own functions would not
    pass (an exception is not cached: every call raises it again).
    """
    if not hikari.__version__.startswith(SUPPORTED_HIKARI):
        raise UnsupportedHikari(
            f"hikari {hikari.__version__}; the identify hook needs {SUPPORTED_HIKARI}x"
        )
    send = getattr(GatewayShardImpl, "_send_json", None)
    if send is None or list(inspect.signature(send).parameters) != ["self", "data", "priority"]:
        raise UnsupportedHikari(
            "hikari's GatewayShardImpl._send_json(self, data, *, priority) changed"
        )
    connect_source = inspect.getsource(GatewayShardImpl._connect)
    if "_OP: _IDENTIFY" not in connect_source or "self._send_json(" not in connect_source:
        raise UnsupportedHikari("hikari's _connect no longer sends IDENTIFY through _send_json")
    if "_check_if_connected" not in inspect.getsource(GatewayShardImpl.get_user_id):
        raise UnsupportedHikari("hikari's get_user_id changed")
    missing = SESSION_SLOTS - set(GatewayShardImpl.__slots__)
    if missing:
        raise UnsupportedHikari(f"hikari's shard no longer keeps {', '.join(sorted(missing))}")
    if "self._seq is None" not in connect_source:
        raise UnsupportedHikari("hikari's _connect no longer chooses RESUME by _seq")
    if "_bucket_manager.acquire_bucket(" not in inspect.getsource(RESTClientImpl._request):
        raise UnsupportedHikari("hikari's REST client no longer paces through its bucket manager")
    if "if self._ws:" not in inspect.getsource(GatewayShardImpl._keep_alive):
        raise UnsupportedHikari("hikari's shard no longer closes its websocket only if it has one")
    one_shard = getattr(GatewayBot, "_start_one_shard", None)
    expected = {"activity", "afk", "idle_since", "status", "large_threshold", "shard_id"}
    expected |= {"shard_count", "url"}
    if one_shard is None or not expected <= set(inspect.signature(one_shard).parameters):
        raise UnsupportedHikari("hikari's GatewayBot._start_one_shard changed")
    start_source = inspect.getsource(GatewayBot.start)
    if "fetch_gateway_bot_info()" not in start_source or ".max_concurrency" not in start_source:
        raise UnsupportedHikari("hikari's start no longer windows shards by the gateway info")


def install(acquire: Acquire, sent: Callable[[int], None]) -> None:
    """Gate every IDENTIFY of every shard in this process through ``acquire(shard_id)``, and
    tell ``sent(shard_id)`` once it has gone out."""
    check_hikari()
    original = GatewayShardImpl._send_json
    if getattr(original, "gated", False):
        raise RuntimeError("the identify hook is already installed")

    # Named as hikari names them, so that check_hikari still recognises the wrapped method.
    async def gated_send_json(
        self: GatewayShardImpl, data: dict[str, Any], *, priority: bool = False
    ) -> None:
        if data.get("op") != IDENTIFY:
            await original(self, data, priority=priority)
            return
        await acquire(self._shard_id)
        await original(self, data, priority=priority)
        sent(self._shard_id)

    gated_send_json.gated = True  # type: ignore[attr-defined]
    GatewayShardImpl._send_json = gated_send_json  # type: ignore[method-assign,assignment]


def session_of(shard: GatewayShardImpl) -> Session | None:
    if shard._session_id is None or shard._seq is None or shard._resume_gateway_url is None:
        return None
    return Session(shard._session_id, shard._seq, shard._resume_gateway_url)


# Sessions that shards resume when they next start, by shard id (``install_resume``).
_to_resume: dict[int, Session] = {}


def install_resume(sessions: dict[int, Session], user_id: int) -> None:
    """Shards in ``sessions`` RESUME them when they next start (again for more sessions)."""
    _to_resume.update(sessions)
    if getattr(GatewayShardImpl.start, "resumes", False):
        return
    check_hikari()
    original = GatewayShardImpl.start

    async def start_resuming(shard: GatewayShardImpl) -> None:
        session = _to_resume.pop(shard._shard_id, None)
        if session is not None:
            shard._session_id = session.session_id
            shard._seq = session.seq
            shard._resume_gateway_url = session.resume_url
            shard._user_id = hikari.Snowflake(user_id)
        await original(shard)

    start_resuming.resumes = True  # type: ignore[attr-defined]
    GatewayShardImpl.start = start_resuming  # type: ignore[method-assign,assignment]

    # Discord replays the missed events before RESUMED, and hikari parses some of them (guilds,
    # messages) with get_user_id(), which refuses until the handshake is done: those events
    # would be dropped. The id is known from the start here, so it is answered at once.
    original_user_id = GatewayShardImpl.get_user_id

    def user_id_while_resuming(self: GatewayShardImpl) -> hikari.Snowflake:
        if self._user_id is not None:
            return self._user_id
        return original_user_id(self)

    GatewayShardImpl.get_user_id = user_id_while_resuming  # type: ignore[method-assign]


async def start_shard(bot: hikari.GatewayBot, shard_id: int, shard_count: int) -> None:
    """Start one more shard in a running bot (one taken from another worker), as hikari's own
    ``start`` starts each, with its defaults; it resumes if ``install_resume`` has its session."""
    info = await bot.rest.fetch_gateway_bot_info()
    await bot._start_one_shard(
        activity=None,
        afk=False,
        idle_since=None,
        status=hikari.Status.ONLINE,
        large_threshold=250,
        shard_id=shard_id,
        shard_count=shard_count,
        url=info.url,
    )


async def detach_shard(bot: hikari.GatewayBot, shard_id: int) -> Session | None:
    """Stop one shard of a running bot without ending its session (it is handed to another
    worker): its session as it stands, if it has one.

    hikari's ``close`` ends the session (it closes with 1001); with the shard's websocket taken
    away first, it stops the shard without a word, and the websocket is then closed with 3000,
    which Discord keeps resumable, as hikari does itself to reconnect.
    """
    shard = bot.shards.get(shard_id)
    if not isinstance(shard, GatewayShardImpl):
        return None
    websocket, shard._ws = shard._ws, None
    with contextlib.suppress(hikari.ComponentStateConflictError):
        await shard.close()
    bot._shards.pop(shard_id, None)
    if websocket is not None:
        await websocket.send_close(code=RESUMABLE_CLOSE, message=b"shard handed over")
    return session_of(shard)


def install_close_watch(closed_for_good: Callable[[int, int, str], None]) -> None:
    """Tell ``closed_for_good(shard_id, code, reason)`` when Discord closes a shard's session
    with a code after which hikari does not reconnect (4011: the bot needs more shards)."""
    check_hikari()
    original = GatewayShardImpl._keep_alive

    async def keep_alive_watched(self: GatewayShardImpl) -> None:
        try:
            await original(self)
        except hikari.GatewayServerClosedConnectionError as error:
            closed_for_good(self._shard_id, int(error.code or 0), error.reason)
            raise

    GatewayShardImpl._keep_alive = keep_alive_watched  # type: ignore[method-assign]


# Set while this worker's hikari starts its shards: how many it starts.
_starting: contextvars.ContextVar[int | None] = contextvars.ContextVar("starting", default=None)


def install_one_window() -> None:
    """Let ``starting_in_one_window`` start every shard of the worker at once.

    hikari's ``start`` waits 5 s between windows of ``max_concurrency`` shards, read from the
    gateway info it fetches. The master's identify gate already paces every IDENTIFY of the
    whole bot, so that wait only delays: a worker of k shards resuming after a restart would be
    partly down for (k - 1) x 5 s. While hikari starts the shards, the info it reads says
    ``max_concurrency`` is their number: all start together, the resuming ones RESUME at once
    (a RESUME takes no identify slot), the identifying ones wait for their grants.
    """
    check_hikari()
    original = RESTClientImpl.fetch_gateway_bot_info

    async def fetch_gateway_bot_info(self: RESTClientImpl) -> hikari.GatewayBotInfo:
        info = await original(self)
        shards = _starting.get()
        if shards is None:  # the bot's own call: the truth
            return info
        limit = attrs.evolve(info.session_start_limit, max_concurrency=max(1, shards))
        return attrs.evolve(info, session_start_limit=limit)

    RESTClientImpl.fetch_gateway_bot_info = fetch_gateway_bot_info  # type: ignore[method-assign]


@contextlib.contextmanager
def starting_in_one_window(shards: int) -> Iterator[None]:
    """Around hikari's ``start`` (see ``install_one_window``)."""
    token = _starting.set(shards)
    try:
        yield
    finally:
        _starting.reset(token)


class GateBuckets(RESTBucketManager):
    """hikari's bucket manager for a worker behind the REST gate: no pacing of its own.

    The gate holds every route bucket and the global limit for all workers, with what Discord
    said to any of them. hikari's own manager, new in every process, knows no bucket: it sends
    one request at a time per route until Discord names the bucket, so a fresh process's backlog
    of replies to different channels went out one by one, seconds apart, while the gate had
    room. Requests go straight to the gate; a 429 that reaches hikari (the gate passes on what
    it cannot retry) is still waited out by hikari's retry.
    """

    def acquire_bucket(
        self, compiled_route: CompiledRoute, authentication: str | None
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    def update_rate_limits(
        self,
        compiled_route: CompiledRoute,
        authentication: str | None,
        bucket_header: str,
        remaining_header: int,
        limit_header: int,
        reset_at: float,
        reset_after: float,
    ) -> None:
        """Nothing to keep: the gate keeps the buckets."""


def defer_rest_limits_to_the_gate(bot: hikari.GatewayBot) -> None:
    """Replace the bot's REST bucket manager with ``GateBuckets`` (before the bot starts)."""
    check_hikari()
    rest = bot.rest
    assert isinstance(rest, RESTClientImpl)
    rest._bucket_manager = GateBuckets(rest._bucket_manager.max_rate_limit)


class DispatchTracker(Protocol):
    def runs(self, shard_id: int, session_id: str | None, seq: int) -> bool:
        """Whether listeners run for this dispatch (not when it is to be skipped)."""

    def replayed(self, shard_id: int, session_id: str | None, seq: int) -> bool:
        """Whether it is a replay of one an earlier process received (``replaying``)."""

    def consumed(
        self,
        shard_id: int,
        session_id: str,
        seq: int,
        listeners: list[asyncio.Future[Any]],
        created: int | None = None,
    ) -> None:
        """hikari consumed the dispatch (its cache updated) and started ``listeners``;
        ``created``: the snowflake of the message or interaction it made, if they ran."""


class Generation(Protocol):
    def ours(self, event_name: str, payload: Any) -> bool:
        """Whether this generation of shards handles the dispatch (``worker.cutover``)."""

    def hold(self, created: int, event_name: str, shard_id: int, payload: Any) -> None:
        """A message or interaction that is not this generation's (to run if nobody did)."""


# The listeners started for the dispatch being consumed, or None while none is; a dispatch is
# consumed synchronously, so one slot serves the process.
_started: list[asyncio.Future[Any]] | None = None
_MUTED: list[asyncio.Future[Any]] = []  # stands for "consumed, start no listener: not handled"
_OTHERS: list[asyncio.Future[Any]] = []  # "consumed, start no listener: the other generation's"


def install_dispatch_tracking(
    tracker: DispatchTracker, generation: Generation, count: Callable[[int, str], None]
) -> None:
    """Follow every gateway dispatch from hikari's consumption to the end of its listeners,
    and ``count`` each by shard and event type.

    hikari consumes a dispatch (``consume_raw_event``: the cache, then ``dispatch`` of the
    events it makes, each listener a task) with the shard's ``_seq`` set to its seq. While it
    does, the listener tasks are gathered for ``tracker.consumed``; a dispatch the tracker
    does not run updates the cache but starts no listener (nor ``wait_for`` waiter), nor does
    one that is the other generation's around a reshard (handled, as far as this one goes).
    """
    check_hikari()
    consume = EventManagerBase.consume_raw_event
    dispatch = EventManagerBase.dispatch

    def dispatch_followed(
        self: EventManagerBase, event: hikari.Event, *, return_tasks: bool = False
    ) -> asyncio.Future[Any] | None:
        started = _started
        if started is None or return_tasks:
            return dispatch(self, event, return_tasks=return_tasks)
        if started is not _MUTED and started is not _OTHERS:
            started.append(dispatch(self, event, return_tasks=True))
        return None

    def consume_followed(
        self: EventManagerBase, event_name: str, shard: hikari.api.GatewayShard, payload: Any
    ) -> None:
        global _started
        assert isinstance(shard, GatewayShardImpl)
        shard_id, session_id, seq = shard._shard_id, shard._session_id, shard._seq
        count(shard_id, event_name)
        if seq is None or session_id is None:  # not a session's dispatch: nothing to follow
            consume(self, event_name, shard, payload)
            return
        created = created_id(event_name, payload)
        if not tracker.runs(shard_id, session_id, seq):
            started = _MUTED
        elif not generation.ours(event_name, payload):
            started = _OTHERS
            if created is not None:
                generation.hold(created, event_name, shard_id, payload)
        else:
            started = []
        _started = started
        # Copied into the listener tasks created now: what they read as ctx.in_replay().
        replay = replaying.set(tracker.replayed(shard_id, session_id, seq))
        try:
            consume(self, event_name, shard, payload)
        except LookupError:  # an event hikari does not know: nothing to handle
            started = []
            raise
        finally:
            _started = None
            replaying.reset(replay)
            if started is not _MUTED:
                ran = created if started is not _OTHERS else None
                tracker.consumed(shard_id, session_id, seq, started, ran)

    EventManagerBase.dispatch = dispatch_followed  # type: ignore[method-assign,assignment]
    EventManagerBase.consume_raw_event = consume_followed  # type: ignore[method-assign]
    global _consume_untracked
    _consume_untracked = consume


# hikari's own consumption, for dispatches run again outside the ledger (``dispatch_again``).
_consume_untracked: Callable[[EventManagerBase, str, hikari.api.GatewayShard, Any], None] | None
_consume_untracked = None


def dispatch_again(bot: hikari.GatewayBot, shard_id: int, event_name: str, payload: Any) -> None:
    """Run bot code for a dispatch consumed earlier without it (a reshard's catch-up): its
    listeners start now, outside the handled-event ledger (its sequence number is long past),
    with ``ctx.in_replay()`` true."""
    shard = bot.shards.get(shard_id)
    if shard is None or _consume_untracked is None:
        return
    replay = replaying.set(True)
    try:
        _consume_untracked(bot.event_manager, event_name, shard, payload)  # type: ignore[arg-type]
    finally:
        replaying.reset(replay)
