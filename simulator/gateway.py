"""The simulated gateway: Discord's websocket protocol, its rules and its close codes.

One ``GatewayConnection`` per websocket walks the states a real connection walks: HELLO sent,
then identified (or resumed), then closed. Whatever outlives the socket (seq, replay buffer,
guilds) lives in a ``Session``. The ``Gateway`` owns what is shared across connections: the
session registry, identify buckets, the daily session budget, and the routing of a guild's
events to the sessions of its shard.

Frames are encoded once per event and numbered per session; each connection compresses them on
its own stream in a writer task, so a slow client never blocks a dispatch.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from collections.abc import Coroutine
from typing import Any, Final, cast

import msgspec
from aiohttp import WSMsgType, web

from simulator import compression
from simulator.config import SimulatorConfig
from simulator.limits import FixedWindow
from simulator.payloads import Payload, PayloadFactory
from simulator.sessions import InvalidSeq, Session, SessionRegistry
from simulator.stats import Stats
from simulator.world import World

log = logging.getLogger("simulator.gateway")


class Op(enum.IntEnum):
    DISPATCH = 0
    HEARTBEAT = 1
    IDENTIFY = 2
    PRESENCE_UPDATE = 3
    VOICE_STATE_UPDATE = 4
    RESUME = 6
    RECONNECT = 7
    REQUEST_GUILD_MEMBERS = 8
    INVALID_SESSION = 9
    HELLO = 10
    HEARTBEAT_ACK = 11
    REQUEST_SOUNDBOARD_SOUNDS = 31


CLIENT_OPS: Final = frozenset(
    {
        Op.HEARTBEAT,
        Op.IDENTIFY,
        Op.PRESENCE_UPDATE,
        Op.VOICE_STATE_UPDATE,
        Op.RESUME,
        Op.REQUEST_GUILD_MEMBERS,
        Op.REQUEST_SOUNDBOARD_SOUNDS,
    }
)


class CloseCode(enum.IntEnum):
    UNKNOWN_ERROR = 4000
    UNKNOWN_OPCODE = 4001
    DECODE_ERROR = 4002
    NOT_AUTHENTICATED = 4003
    AUTHENTICATION_FAILED = 4004
    ALREADY_AUTHENTICATED = 4005
    INVALID_SEQ = 4007
    RATE_LIMITED = 4008
    SESSION_TIMED_OUT = 4009
    INVALID_SHARD = 4010
    SHARDING_REQUIRED = 4011
    INVALID_API_VERSION = 4012
    INVALID_INTENTS = 4013
    DISALLOWED_INTENTS = 4014


# Closes after which Discord will not RESUME the session: a normal close by the client, or a
# code whose documentation says "start a new session".
SESSION_ENDING_CLOSES: Final = frozenset(
    {1000, 1001, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014}
)

GUILDS: Final = 1 << 0
GUILD_MEMBERS: Final = 1 << 1
GUILD_PRESENCES: Final = 1 << 8
GUILD_MESSAGES: Final = 1 << 9
MESSAGE_CONTENT: Final = 1 << 15
KNOWN_INTENTS: Final = (1 << 26) - 1
PRIVILEGED_INTENTS: Final = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT
EVENT_INTENTS: Final = {
    "GUILD_CREATE": GUILDS,
    "GUILD_DELETE": GUILDS,
    "MESSAGE_CREATE": GUILD_MESSAGES,
    "GUILD_MEMBER_UPDATE": GUILD_MEMBERS,
    "PRESENCE_UPDATE": GUILD_PRESENCES,
}

API_VERSIONS: Final = frozenset({"9", "10"})
MAX_CLIENT_PAYLOAD: Final = 4096  # bytes; Discord closes larger payloads with 4002
HEARTBEAT_GRACE: Final = 1.5  # a beat may be this many intervals late before 4009
GUILD_STREAM_SLICE: Final = 64  # GUILD_CREATEs built between yields to the event loop
CLOSE_TIMEOUT: Final = 2.0  # seconds to wait for the client's close frame
# A client this many dispatches behind is dropped, as Discord drops consumers that cannot keep
# up; its session keeps everything in the replay buffer, so a RESUME loses nothing.
MAX_PENDING_DISPATCHES = 50_000

encode = msgspec.json.Encoder().encode
decode = msgspec.json.Decoder().decode


class ConnectionState(enum.Enum):
    AWAITING_IDENTIFY = "awaiting identify"  # HELLO sent; only heartbeats, IDENTIFY, RESUME
    CONNECTED = "connected"  # identified or resumed: dispatches flow
    CLOSED = "closed"


class Gateway:
    def __init__(
        self, config: SimulatorConfig, world: World, payloads: PayloadFactory, stats: Stats
    ) -> None:
        self.config = config
        self.world = world
        self.payloads = payloads
        self.stats = stats
        self.sessions = SessionRegistry(config.resume_window)
        self.session_budget = FixedWindow(config.session_start_total, config.session_start_reset)
        self.connections: set[GatewayConnection] = set()
        self.url = ""  # ws://HOST:PORT/gateway, known once the server is bound
        self._identify_buckets = [
            FixedWindow(1, config.identify_window) for _ in range(config.max_concurrency)
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
        self.in_background(self._stream_guilds(session, guild_ids))

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stream_guilds(self, session: Session, guild_ids: list[int]) -> None:
        for start in range(0, len(guild_ids), GUILD_STREAM_SLICE):
            for guild_id in guild_ids[start : start + GUILD_STREAM_SLICE]:
                if session.ended:
                    return
                if not self.world.has_guild(guild_id):
                    continue  # removed while streaming
                payload = self.payloads.guild_create(self.world.guild(guild_id), available=True)
                session.dispatch(b"GUILD_CREATE", encode(payload))
                session.guild_ids.add(guild_id)
            await asyncio.sleep(0)

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


class GatewayConnection:
    def __init__(self, gateway: Gateway, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.gateway = gateway
        self.stats = gateway.stats
        self.request = request
        self.ws = ws
        self.state = ConnectionState.AWAITING_IDENTIFY
        self.session: Session | None = None
        self.compression = compression.NONE
        self.close_code: int | None = None  # the code this side closed with
        self._compress: compression.Compress | None = None
        self._pending: list[bytes] = []
        self._wake = asyncio.Event()
        self._sends = FixedWindow(
            gateway.config.gateway_send_limit, gateway.config.gateway_send_window
        )
        self._last_heartbeat = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    def __repr__(self) -> str:
        session = self.session
        shard = f"shard {session.shard_id}/{session.shard_count}" if session else "no session"
        return f"<GatewayConnection {shard} {self.state.value}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        self.stats.connections += 1
        refusal = self._negotiate(self.request.query)
        if refusal is not None:
            await self.close(CloseCode.INVALID_API_VERSION, refusal)
            return
        self.stats.compression[self.compression] += 1
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._write()), loop.create_task(self._watch_heartbeats())]
        interval_ms = int(self.gateway.config.heartbeat_interval * 1000)
        self.send_op(Op.HELLO, {"heartbeat_interval": interval_ms, "_trace": ["sharder-simulator"]})
        try:
            async for message in self.ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self._receive(cast(bytes, message.data))
                if self.state is ConnectionState.CLOSED:
                    break
        finally:
            self._finish()

    def _negotiate(self, query: Any) -> str | None:
        """Check the URL's query; a reason to refuse it, or None."""
        version = query.get("v", "10")
        if version not in API_VERSIONS:
            return f"invalid API version v={version}; the simulator speaks v=9 and v=10"
        encoding = query.get("encoding", "json")
        if encoding != "json":
            return f"unsupported encoding={encoding}; the simulator speaks json"
        mode = query.get("compress", compression.NONE)
        if mode not in compression.MODES:
            return f"unsupported compress={mode}; use one of {', '.join(compression.MODES)}"
        self.compression = mode
        self._compress = compression.stream_compressor(mode)
        return None

    def _finish(self) -> None:
        self.state = ConnectionState.CLOSED
        for task in self._tasks:
            task.cancel()
        session = self.session
        if session is None or session.outbox is not self:
            return
        code = self.close_code if self.close_code is not None else self.ws.close_code
        if code in SESSION_ENDING_CLOSES:
            self.gateway.sessions.end(session)
        else:
            self.gateway.sessions.detach(session)
        log.debug("%r finished with close code %s", self, code)

    async def close(self, code: int, reason: str) -> None:
        if self.state is ConnectionState.CLOSED:
            return
        self.state = ConnectionState.CLOSED
        self.close_code = code
        self.stats.close_codes[code] += 1
        log.info("closing %r with %d: %s", self, code, reason)
        # Shielded: the reader finishing may cancel the task that asked for the close.
        await asyncio.shield(self.ws.close(code=code, message=reason.encode()[:120]))

    def invalidate_session(self, *, resumable: bool) -> None:
        """Op 9: the client must RESUME (resumable) or IDENTIFY a new session."""
        session = self.session
        if session is not None and not resumable:
            self.gateway.sessions.end(session)
            self.session = None
            self.state = ConnectionState.AWAITING_IDENTIFY
        self.send_op(Op.INVALID_SESSION, resumable)

    def drop(self) -> None:
        """Lose the TCP connection without a close frame, as a network failure would."""
        self.state = ConnectionState.CLOSED
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    # -- sending -----------------------------------------------------------------------------

    def queue(self, frame: bytes) -> None:
        """A session's dispatch for this connection (the session's ``Outbox``)."""
        if len(self._pending) >= MAX_PENDING_DISPATCHES:
            if self.state is not ConnectionState.CLOSED:
                self.stats.slow_clients_dropped += 1
                log.warning("dropping %r: %d dispatches behind", self, len(self._pending))
                self.drop()
            return
        self.stats.events_dispatched += 1
        self._pending.append(frame)
        self._wake.set()

    def send_op(self, op: Op, data: object) -> None:
        self._pending.append(encode({"op": op, "d": data}))
        self._wake.set()

    async def _write(self) -> None:
        compress = self._compress
        send = self.ws.send_frame
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                pending, self._pending = self._pending, []
                for frame in pending:
                    if compress is None:
                        await send(frame, WSMsgType.TEXT)
                    else:
                        await send(compress(frame), WSMsgType.BINARY)
        except (ConnectionError, RuntimeError) as error:
            log.debug("%r stopped writing: %s", self, error)

    # -- receiving ---------------------------------------------------------------------------

    async def _receive(self, raw: bytes) -> None:
        if not self._sends.try_acquire():
            self.stats.gateway_rate_limited += 1
            limit, window = (
                self.gateway.config.gateway_send_limit,
                self.gateway.config.gateway_send_window,
            )
            await self.close(CloseCode.RATE_LIMITED, f"more than {limit} payloads in {window:g} s")
            return
        if len(raw) > MAX_CLIENT_PAYLOAD:
            await self.close(CloseCode.DECODE_ERROR, f"payload over {MAX_CLIENT_PAYLOAD} bytes")
            return
        try:
            payload = decode(raw)
        except (msgspec.DecodeError, UnicodeDecodeError):
            await self.close(CloseCode.DECODE_ERROR, "payload is not valid JSON")
            return
        if not isinstance(payload, dict) or type(payload.get("op")) is not int:
            await self.close(CloseCode.DECODE_ERROR, "payload is not an object with an integer op")
            return
        op = payload["op"]
        data = payload.get("d")
        if op not in CLIENT_OPS:
            await self.close(CloseCode.UNKNOWN_OPCODE, f"unknown opcode {op}")
        elif op == Op.HEARTBEAT:
            self._last_heartbeat = time.monotonic()
            self.stats.heartbeats += 1
            self.send_op(Op.HEARTBEAT_ACK, None)
        elif op == Op.IDENTIFY:
            await self._identify(data)
        elif op == Op.RESUME:
            await self._resume(data)
        elif self.session is None:
            await self.close(CloseCode.NOT_AUTHENTICATED, f"op {op} before IDENTIFY")
        elif op == Op.REQUEST_GUILD_MEMBERS:
            await self._request_guild_members(data)
        # Presence, voice state and soundboard requests are accepted and have no reply here.

    async def _authenticate(self, data: object) -> dict[str, Any] | None:
        if self.session is not None:
            await self.close(CloseCode.ALREADY_AUTHENTICATED, "already authenticated")
            return None
        if not isinstance(data, dict):
            await self.close(CloseCode.DECODE_ERROR, "d must be an object")
            return None
        if data.get("token") != self.gateway.world.token():
            await self.close(CloseCode.AUTHENTICATION_FAILED, "authentication failed")
            return None
        return data

    async def _identify(self, data: object) -> None:
        identify = await self._authenticate(data)
        if identify is None:
            return
        config = self.gateway.config
        shard = identify.get("shard", [0, 1])
        if not (
            isinstance(shard, list)
            and len(shard) == 2
            and all(type(part) is int for part in shard)
            and 0 <= shard[0] < shard[1]
        ):
            await self.close(CloseCode.INVALID_SHARD, f"invalid shard {shard!r}")
            return
        shard_id, shard_count = shard
        intents = identify.get("intents")
        if type(intents) is not int or not 0 <= intents <= KNOWN_INTENTS:
            await self.close(CloseCode.INVALID_INTENTS, f"invalid intents {intents!r}")
            return
        if intents & PRIVILEGED_INTENTS & ~config.allowed_privileged_intents:
            await self.close(CloseCode.DISALLOWED_INTENTS, "privileged intents not enabled")
            return
        guild_ids = self.gateway.shard_guilds(shard_id, shard_count)
        if len(guild_ids) > config.max_guilds_per_shard:
            await self.close(
                CloseCode.SHARDING_REQUIRED,
                f"{len(guild_ids)} guilds on one shard; the limit is {config.max_guilds_per_shard}",
            )
            return
        self.stats.identifies += 1
        if not self.gateway.identify_bucket(shard_id).try_acquire():
            self.stats.identify_violations += 1
            log.warning("shard %d identified inside its bucket's window", shard_id)
            if config.strict:
                await self.close(CloseCode.RATE_LIMITED, "identify bucket window not over")
                return
        if not self.gateway.session_budget.try_acquire():
            self.stats.session_budget_violations += 1
            log.warning("shard %d identified with the session start budget spent", shard_id)
            if config.strict:
                await self.close(CloseCode.RATE_LIMITED, "session start limit reached")
                return
        session = Session(
            secrets.token_hex(16), shard_id, shard_count, intents, config.resume_buffer
        )
        self.gateway.sessions.add(session)
        self._attach(session)
        ready = self.gateway.payloads.ready(
            session_id=session.session_id,
            resume_url=self.gateway.url,
            shard=(shard_id, shard_count),
            guild_ids=guild_ids,
        )
        session.dispatch(b"READY", encode(ready))
        if intents & GUILDS:
            self.gateway.stream_guilds(session, guild_ids)

    async def _resume(self, data: object) -> None:
        resume = await self._authenticate(data)
        if resume is None:
            return
        session_id, seq = resume.get("session_id"), resume.get("seq")
        if not isinstance(session_id, str) or not (seq is None or type(seq) is int):
            await self.close(CloseCode.DECODE_ERROR, "RESUME needs session_id and seq")
            return
        session = self.gateway.sessions.resumable(session_id)
        if session is None:
            self.stats.resumes_refused += 1
            self.send_op(Op.INVALID_SESSION, False)
            return
        try:
            missed = session.missed_since(seq or 0)
        except InvalidSeq as error:
            self.gateway.sessions.end(session)
            await self.close(CloseCode.INVALID_SEQ, str(error))
            return
        previous = session.outbox
        if isinstance(previous, GatewayConnection):
            # Two connections may not share a session: the newer one wins, as on Discord.
            self.stats.resumes_displacing += 1
            previous.session = None
            self.gateway.in_background(
                previous.close(CloseCode.SESSION_TIMED_OUT, "session resumed elsewhere")
            )
        self.stats.resumes += 1
        self._attach(session)
        # Past the pending limit on purpose: the replay is bounded by the session's buffer.
        self._pending.extend(missed)
        self._pending.append(b'{"op":0,"s":%d,"t":"RESUMED","d":{}}' % session.seq)
        self._wake.set()
        self.stats.events_replayed += len(missed)
        self.stats.events_dispatched += len(missed) + 1

    def _attach(self, session: Session) -> None:
        session.outbox = self
        self.session = session
        self.state = ConnectionState.CONNECTED

    async def _request_guild_members(self, data: object) -> None:
        session = cast(Session, self.session)
        if not isinstance(data, dict) or "guild_id" not in data:
            await self.close(CloseCode.DECODE_ERROR, "REQUEST_GUILD_MEMBERS needs guild_id")
            return
        if not session.intents & GUILD_MEMBERS:
            await self.close(CloseCode.DISALLOWED_INTENTS, "member chunks need GUILD_MEMBERS")
            return
        requested = data["guild_id"]
        try:
            guild_ids = [
                int(raw) for raw in (requested if isinstance(requested, list) else [requested])
            ]
        except (TypeError, ValueError):
            await self.close(CloseCode.DECODE_ERROR, f"invalid guild_id {requested!r}")
            return
        for guild_id in guild_ids:
            if guild_id not in session.guild_ids:
                continue
            guild = self.gateway.world.guild(guild_id)
            chunk = {
                "guild_id": str(guild_id),
                "members": [
                    self.gateway.payloads.member(guild, member) for member in guild.member_ids
                ],
                "chunk_index": 0,
                "chunk_count": 1,
                "not_found": [],
                "nonce": data.get("nonce"),
            }
            session.dispatch(b"GUILD_MEMBERS_CHUNK", encode(chunk))

    async def _watch_heartbeats(self) -> None:
        allowed = self.gateway.config.heartbeat_interval * HEARTBEAT_GRACE
        while self.state is not ConnectionState.CLOSED:
            overdue_in = self._last_heartbeat + allowed - time.monotonic()
            if overdue_in > 0:
                await asyncio.sleep(overdue_in)
                continue
            self.stats.heartbeat_timeouts += 1
            await self.close(CloseCode.SESSION_TIMED_OUT, "no heartbeat in time")
