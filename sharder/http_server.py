"""The master's HTTP listener: ``/metrics`` for Prometheus, ``/`` for the live dashboard.

Read-only unless ``[metrics] admin_token`` is set: then ``POST /api/restart`` restarts a worker
or rolls them all, for a caller that sends the token as ``Authorization: Bearer``. A browser does
not send that header across sites without the listener's consent (which it never gives), so a
page elsewhere cannot press the buttons for a signed-in operator. While bound to loopback, only
loopback host names are answered: another site's page cannot read the dashboard by pointing its
own name at 127.0.0.1 (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from sharder.config import MetricsSection
from sharder.dashboard_feed import DashboardFeed, TooManyPages
from sharder.metrics import registry_of

if TYPE_CHECKING:
    from sharder.supervisor import Supervisor

log = logging.getLogger("sharder.http")

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
MAX_BODY = 4096  # bytes of a POST: a small JSON object
ASK = 'a restart is {"worker": N} or {"rolling": true}'


class RestartAsked(msgspec.Struct, forbid_unknown_fields=True):
    worker: int | None = None
    rolling: bool = False


class HttpServer:
    def __init__(self, config: MetricsSection, supervisor: Supervisor) -> None:
        self.config = config
        self.supervisor = supervisor
        self.host, self.port = config.host_port()
        self.feed = DashboardFeed(supervisor, admin=bool(config.admin_token))
        self.registry = registry_of(supervisor)
        self.static = {
            entry.name: entry.read_bytes()
            for entry in resources.files("sharder.dashboard").joinpath("static").iterdir()
            if entry.name.endswith(tuple(STATIC_TYPES))
        }
        self.url: str | None = None
        self._runner: web.AppRunner | None = None
        self._feeding: asyncio.Task[None] | None = None
        self._loopback = _is_loopback(self.host)

    async def start(self) -> str:
        """Listen; the URL it listens on (its real port when configured 0). OSError if it cannot."""
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._guard])
        app.add_routes(
            [
                web.get("/metrics", self._metrics),
                web.get("/", self._index),
                web.get("/static/{name}", self._static),
                web.get("/events", self._events),
                web.post("/api/restart", self._restart),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        port = self._runner.addresses[0][1]
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        self._feeding = asyncio.get_running_loop().create_task(self.feed.run())
        if not self._loopback and not self.config.admin_token:
            log.warning(
                "metrics and dashboard on %s, reachable from other machines: anyone there can "
                "see the bot's layout and load (set [metrics] address to 127.0.0.1:PORT, or "
                "put it behind a proxy that authenticates)",
                self.url,
            )
        elif not self._loopback:
            log.warning("metrics and dashboard on %s, reachable from other machines", self.url)
        log.info("metrics on %s/metrics, dashboard on %s/", self.url, self.url)
        return self.url

    async def close(self) -> None:
        if self._feeding is not None:
            self._feeding.cancel()
            await asyncio.gather(self._feeding, return_exceptions=True)
        self.feed.end_pages()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- requests --------------------------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._loopback and not _is_loopback(_host_name(request.host)):
            return web.Response(status=421, text="this listener answers loopback names only\n")
        response: web.StreamResponse = await handler(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _index(self, _: web.Request) -> web.Response:
        return self._file("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        return self._file(request.match_info["name"])

    def _file(self, name: str) -> web.Response:
        body = self.static.get(name)  # only the package's own files, by exact name
        if body is None:
            raise web.HTTPNotFound()
        content_type = STATIC_TYPES[name[name.rindex(".") :]]
        return web.Response(body=body, content_type=content_type, charset="utf-8")

    async def _events(self, request: web.Request) -> web.StreamResponse:
        try:
            page = self.feed.open_page()
        except TooManyPages as error:
            raise web.HTTPServiceUnavailable(text=f"{error}\n") from None
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        response.headers.update(SECURITY_HEADERS)
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n")  # reconnect after a second, not three
            while event := await page.get():
                await response.write(event)
        except ConnectionError:  # the page went away
            pass
        finally:
            self.feed.close_page(page)
        return response

    async def _restart(self, request: web.Request) -> web.Response:
        token = self.config.admin_token
        if not token:
            return _answer(403, error="read-only: [metrics] admin_token is not set")
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(given, token.encode()):
            return _answer(401, error="wrong or missing admin token")
        try:
            asked = msgspec.json.decode(await request.read(), type=RestartAsked)
        except msgspec.DecodeError as error:
            return _answer(400, error=f"{ASK}: {error}")
        try:
            if asked.rolling:
                message = self.supervisor.rolling_restart()
            elif asked.worker is not None:
                message = await self.supervisor.restart_worker(asked.worker)
            else:
                return _answer(400, error=ASK)
        except ValueError as error:  # no such worker, or another change runs
            return _answer(409, error=str(error))
        log.info("dashboard: %s", message)
        return _answer(200, message=message)


def _answer(status: int, **fields: Any) -> web.Response:
    return web.json_response({"ok": status == 200, **fields}, status=status)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """The name in a Host header, without its port and brackets."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header
