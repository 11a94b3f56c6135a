"""The REST gate process: one loopback HTTP proxy in front of Discord's API for every worker.

Each worker's hikari gets ``rest_url = http://127.0.0.1:PORT/{secret}/w/{worker}/api/v10``:
every REST call of every worker, hikari's own included, comes here, so no request escapes the
limits. The worker id in the path lets the gate take workers in turn. The secret, new each run,
keeps everyone else out: any local process can reach the port, and a request without it is
refused at once (403) before it counts toward anything, as is one naming no worker of this
sharder or with dot segments (which would step out of the API base upstream).

Requests are admitted by ``RestLimits`` and forwarded to the configured API base; responses
(Discord's rate-limit headers included, which hikari paces itself by) stream back unchanged. A
429 is retried here once its pause is over, so the workers do not each collect it. Request
bodies up to ``RETRY_BODY_MAX`` are read first, so that a retry can send them again; larger
ones (big uploads) are streamed and a 429 on them goes back to hikari, which retries. Headers
are never logged: they carry the bot token.

It runs in its own process (supervised by the master like the workers, on a listening socket
the master keeps across restarts), not in the master's event loop: docs/rest-gate.md gives the
measurement behind that.
"""

from __future__ import annotations

import hmac
import json
import logging
import multiprocessing.connection
import socket
import time
import urllib.parse
from collections.abc import Mapping

import aiohttp
from aiohttp import hdrs, web
from multidict import CIMultiDict

from child.link import MasterLink
from gate.limits import RestLimits
from gate.routes import redacted
from gate.spec import RestGateSpec
from gate.waiting import GateRefusal
from protocol import AnyMessage
from protocol.clock import Clock
from protocol.messages import Heartbeat, RestGateReport, RouteReport

log = logging.getLogger("gate.rest_gate")

RETRY_BODY_MAX = 1024 * 1024
BODY_MAX = 32 * 1024 * 1024  # above Discord's 25 MiB upload limit, with multipart framing
HOP_BY_HOP = frozenset(
    {
        hdrs.CONNECTION,
        hdrs.KEEP_ALIVE,
        hdrs.TRANSFER_ENCODING,
        hdrs.CONTENT_LENGTH,
        hdrs.HOST,
        hdrs.TE,
        hdrs.UPGRADE,
        hdrs.PROXY_AUTHORIZATION,
        hdrs.EXPECT,  # answered here, by aiohttp's server; the upstream request sends at once
    }
)
REFUSED_STATUS = 408  # hikari raises a client error at once, without retrying
# hikari gives a request 30 s in all; an answer later than that has nobody waiting for it.
UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=30.0)
GATE_ID = 0


async def serve(
    spec: RestGateSpec, listener: socket.socket, pipe: multiprocessing.connection.Connection
) -> int:
    """The process's entry (run by ``child.runtime``): the gate until the link ends."""
    link = await MasterLink.open(pipe, "rest_gate", GATE_ID)
    # No decompression: bodies pass through as Discord sent them, with their headers.
    session = aiohttp.ClientSession(auto_decompress=False, timeout=UPSTREAM_TIMEOUT)
    gate = RestGate(spec, session)

    def dispatch(message: AnyMessage) -> None:
        if isinstance(message, Heartbeat):
            link.acknowledge(message)
            link.send(gate.report())

    runner = web.AppRunner(gate.application(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, listener).start()
    log.info("forwarding to %s, %d requests/s", gate.upstream, spec.global_limit)
    try:
        await link.serve(dispatch)
    finally:
        await runner.cleanup()
        await session.close()
    return 0


class RestGate:
    """The proxy: who may call, when each request may go, and its forwarding."""

    def __init__(
        self,
        spec: RestGateSpec,
        session: aiohttp.ClientSession,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.spec = spec
        self.session = session
        self.upstream = spec.api_url.rstrip("/")
        self.limits = RestLimits(
            spec.global_limit,
            max_wait=spec.max_wait,
            invalid_limit=spec.invalid_limit,
            slowdown_at=spec.slowdown_at,
            refuse_at=spec.refuse_at,
            clock=clock,
        )

    def application(self) -> web.Application:
        app = web.Application(client_max_size=BODY_MAX)
        app.router.add_route("*", "/{secret}/w/{worker:[0-9]{1,6}}/api/v10/{tail:.*}", self.admit)
        app.router.add_route("*", "/{anything:.*}", refuse_stranger)
        return app

    async def admit(self, request: web.Request) -> web.StreamResponse:
        """Only this sharder's workers get through, and only below the API base."""
        secret = request.match_info["secret"].encode()
        if not hmac.compare_digest(secret, self.spec.secret.encode()):
            return await refuse_stranger(request)
        if int(request.match_info["worker"]) >= self.spec.workers:
            return await refuse_stranger(request)
        if has_dot_segment(request.raw_path):
            return web.json_response(
                {"message": "REST gate: dot segments are refused", "code": 0}, status=400
            )
        return await self.forward(request)

    def report(self) -> RestGateReport:
        limits = self.limits
        routes = [
            RouteReport(
                route=name,
                requests=counts.requests,
                queued_ms=round(counts.queued_s * 1000, 1),
                queued_max_ms=round(counts.queued_max_s * 1000, 1),
                got_429=counts.got_429,
                invalid=counts.invalid,
            )
            for name, counts in sorted(limits.routes.items())
        ]
        return RestGateReport(
            requests=sum(route.requests for route in routes),
            got_429=sum(route.got_429 for route in routes),
            invalid_10min=limits.invalid_count(),
            refused=limits.refused,
            routes=routes,
        )

    async def forward(self, request: web.Request) -> web.StreamResponse:
        worker = int(request.match_info["worker"])
        path = "/" + request.match_info["tail"]
        url = f"{self.upstream}{path}"
        if request.query_string:
            url = f"{url}?{request.query_string}"
        headers = forwarded(request.headers)
        length = request.content_length
        body: bytes | aiohttp.StreamReader | None
        if length is None or length <= RETRY_BODY_MAX:
            body = await request.read() if request.can_read_body else None
        else:
            body = request.content
            headers[hdrs.CONTENT_LENGTH] = str(length)
        shown = redacted(path)  # webhook and interaction tokens stay out of the logs
        while True:
            try:
                admission = await self.limits.admit(worker, request.method, path)
            except GateRefusal as refusal:
                log.warning("refused %s %s: %s", request.method, shown, refusal)
                return web.json_response(
                    {"message": f"REST gate: {refusal}", "code": 0}, status=REFUSED_STATUS
                )
            # Settled by the answer, or released on every other way out (a failed connection, a
            # timeout, the caller gone): a turn never given back would hold its bucket for good.
            settled = False
            try:
                upstream = await self.session.request(
                    request.method, url, headers=headers, data=body, allow_redirects=False
                )
                limited = b""
                if upstream.status == 429:
                    async with upstream:
                        limited = await upstream.read()
                settled = True
                retry = self.limits.settle(
                    admission, upstream.status, upstream.headers, retry_after(limited)
                )
            except (aiohttp.ClientError, TimeoutError) as error:
                reason = str(error) or type(error).__name__
                log.warning("%s %s: the API did not answer: %s", request.method, shown, reason)
                return web.json_response(
                    {"message": f"REST gate: the API did not answer: {reason}", "code": 0},
                    status=502,
                )
            finally:
                if not settled:
                    self.limits.release(admission)
            if upstream.status != 429:
                async with upstream:
                    return await self._relay(request, upstream)
            if retry and not isinstance(body, aiohttp.StreamReader):
                log.info("%s %s: 429, retried after its pause", request.method, shown)
                continue
            return web.Response(status=429, body=limited, headers=forwarded(upstream.headers))

    @staticmethod
    async def _relay(request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        response = web.StreamResponse(
            status=upstream.status, reason=upstream.reason, headers=forwarded(upstream.headers)
        )
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        await response.prepare(request)
        async for chunk in upstream.content.iter_any():
            await response.write(chunk)
        await response.write_eof()
        return response


async def refuse_stranger(request: web.Request) -> web.Response:
    return web.json_response({"message": "REST gate: not a worker of this sharder"}, status=403)


def has_dot_segment(raw_path: str) -> bool:
    """Whether the path, percent-decoded, has a ``.`` or ``..`` segment."""
    path = urllib.parse.unquote(raw_path.split("?", 1)[0])
    return any(segment in (".", "..") for segment in path.split("/"))


def forwarded(headers: Mapping[str, str]) -> CIMultiDict[str]:
    """The headers that go on to the other side: all but the connection's own."""
    return CIMultiDict((name, value) for name, value in headers.items() if name not in HOP_BY_HOP)


def retry_after(body: bytes) -> float | None:
    """A 429 body's ``retry_after`` in seconds, if it has a usable one."""
    try:
        value = json.loads(body).get("retry_after")
    except (ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, int | float) and value >= 0 else None
