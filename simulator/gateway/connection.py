"""One websocket's state machine: HELLO sent and awaiting IDENTIFY or RESUME, then connected,
then closed; the frames it writes, the payloads it reads, and the heartbeats it expects.

What IDENTIFY and RESUME mean is the handshake's (``handshake``); this module checks every
payload against the connection's state and the protocol's limits, then routes it by opcode.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec
from aiohttp import WSMsgType, web

from simulator import compression
from simulator.gateway import handshake
from simulator.gateway.guilds import request_guild_members
from simulator.gateway.protocol import (
    API_VERSIONS,
    CLIENT_OPS,
    MAX_CLIENT_PAYLOAD,
    SESSION_ENDING_CLOSES,
    CloseCode,
    Op,
    decode,
    encode,
)
from simulator.limits import FixedWindow
from simulator.sessions import Session

if TYPE_CHECKING:  # the hub creates connections; they reach its shared state through it
    from simulator.gateway.hub import Gateway

log = logging.getLogger("simulator.gateway")

HEARTBEAT_GRACE: Final = 1.5  # a beat may be this many intervals late before 4009
CLOSE_TIMEOUT: Final = 2.0  # seconds to wait for the client's close frame
# A client this many dispatches behind is dropped, as Discord drops consumers that cannot keep
# up; its session keeps everything in the replay buffer, so a RESUME loses nothing.
MAX_PENDING_DISPATCHES = 50_000


class ConnectionState(enum.Enum):
    AWAITING_IDENTIFY = "awaiting identify"  # HELLO sent; only heartbeats, IDENTIFY, RESUME
    CONNECTED = "connected"  # identified or resumed: dispatches flow
    CLOSED = "closed"


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
        self._clock = gateway.clock
        self._sends = FixedWindow(
            gateway.config.gateway_send_limit, gateway.config.gateway_send_window, self._clock
        )
        self._last_heartbeat = self._clock()
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

    # -- sessions ------------------------------------------------------------------------------

    def attach(self, session: Session) -> None:
        """Dispatches of ``session`` now come here: the connection is identified or resumed."""
        session.outbox = self
        self.session = session
        self.state = ConnectionState.CONNECTED

    def take_over(self, session: Session, missed: list[bytes]) -> None:
        """Finish a RESUME: replay what the client missed, then RESUMED, then live dispatches."""
        previous = session.outbox
        if isinstance(previous, GatewayConnection):
            # Two connections may not share a session: the newer one wins, as on Discord.
            self.stats.resumes_displacing += 1
            previous.session = None
            self.gateway.in_background(
                previous.close(CloseCode.SESSION_TIMED_OUT, "session resumed elsewhere")
            )
        self.stats.resumes += 1
        self.attach(session)
        # Past the pending limit on purpose: the replay is bounded by the session's buffer.
        self._pending.extend(missed)
        self._pending.append(b'{"op":0,"s":%d,"t":"RESUMED","d":{}}' % session.seq)
        self._wake.set()
        self.stats.events_replayed += len(missed)
        self.stats.events_dispatched += len(missed) + 1

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
            self._last_heartbeat = self._clock()
            self.stats.heartbeats += 1
            self.send_op(Op.HEARTBEAT_ACK, None)
        elif op == Op.IDENTIFY:
            await handshake.identify(self, data)
        elif op == Op.RESUME:
            await handshake.resume(self, data)
        elif self.session is None:
            await self.close(CloseCode.NOT_AUTHENTICATED, f"op {op} before IDENTIFY")
        elif op == Op.REQUEST_GUILD_MEMBERS:
            await request_guild_members(self, data)
        # Presence, voice state and soundboard requests are accepted and have no reply here.

    async def _watch_heartbeats(self) -> None:
        allowed = self.gateway.config.heartbeat_interval * HEARTBEAT_GRACE
        while self.state is not ConnectionState.CLOSED:
            overdue_in = self._last_heartbeat + allowed - self._clock()
            if overdue_in > 0:
                await asyncio.sleep(overdue_in)
                continue
            self.stats.heartbeat_timeouts += 1
            await self.close(CloseCode.SESSION_TIMED_OUT, "no heartbeat in time")
