"""The simulator as one server: REST, gateway, CDN and control on one port of 127.0.0.1.

``Simulator`` wires the parts together, binds, and publishes the URLs a client needs::

    async with Simulator(SimulatorConfig(guilds=100)) as sim:
        bot = hikari.GatewayBot(sim.token, rest_url=sim.rest_url)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from types import TracebackType
from typing import Final, Self

from aiohttp import hdrs, web

from simulator.cdn import add_cdn_routes
from simulator.config import SimulatorConfig
from simulator.control import Control
from simulator.gateway.hub import Gateway
from simulator.limits import Clock
from simulator.messages import MessageLog
from simulator.payloads import PayloadFactory, SnowflakeFactory
from simulator.responses import error_response
from simulator.rest import API_PREFIX, MAX_REQUEST_SIZE
from simulator.rest.api import RestApi
from simulator.stats import Stats
from simulator.traffic.generator import TrafficGenerator
from simulator.world import World

log = logging.getLogger("simulator")

EXPIRY_INTERVAL: Final = 1.0  # seconds between sweeps of sessions past their resume window


class Simulator:
    def __init__(self, config: SimulatorConfig, clock: Clock = time.monotonic) -> None:
        """``clock`` keeps every limit, window and deadline; a test gives its virtual one."""
        self.config = config
        started = time.perf_counter()
        self.world = World(
            seed=config.seed,
            guild_count=config.guilds,
            channels_per_guild=config.channels_per_guild,
            roles_per_guild=config.roles_per_guild,
            members_per_guild=config.members_per_guild,
            emojis_per_guild=config.emojis_per_guild,
            user_count=config.users,
        )
        self.world_build_seconds = time.perf_counter() - started
        self.stats = Stats()
        self.payloads = PayloadFactory(self.world)
        self.snowflakes = SnowflakeFactory()
        self.gateway = Gateway(config, self.world, self.payloads, self.stats, clock)
        self.messages = MessageLog(
            self.world, self.payloads, self.gateway, self.stats, self.snowflakes
        )
        self.rest = RestApi(
            config,
            self.world,
            self.payloads,
            self.gateway,
            self.messages,
            self.stats,
            self.snowflakes,
            clock,
        )
        self.traffic = TrafficGenerator(
            self.world, self.payloads, self.gateway, self.messages, clock
        )
        self.control = Control(
            self.world,
            self.payloads,
            self.gateway,
            self.messages,
            self.traffic,
            self.stats,
            self.rest,
        )
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._expiry: asyncio.Task[None] | None = None

    @property
    def token(self) -> str:
        return self.world.token()

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return self.gateway.url

    @property
    def control_url(self) -> str:
        return f"{self.base_url}/_sim"

    @property
    def cdn_url(self) -> str:
        return self.base_url

    def application(self) -> web.Application:
        # The REST sub-app takes uploads up to Discord's limit; the main app reads the request.
        app = web.Application(middlewares=[self.control.errors], client_max_size=MAX_REQUEST_SIZE)
        app.router.add_get("/gateway", self.gateway.handle)
        app.add_routes(self.control.routes())
        app.router.add_get(
            "/attachments/{channel_id}/{attachment_id}/{filename}", self._get_attachment
        )
        add_cdn_routes(app, self.world)
        app.add_subapp(API_PREFIX, self.rest.application())
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.application(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.base_url = f"http://{host}:{port}"
        self.gateway.url = f"ws://{host}:{port}/gateway"
        self.messages.attachment_url = f"{self.base_url}/attachments"
        self._expiry = asyncio.get_running_loop().create_task(self._expire_sessions())
        log.info("simulator serving %d guilds on %s", len(self.world.guild_ids), self.base_url)

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry
        await self.traffic.stop()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _expire_sessions(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_INTERVAL)
            self.gateway.sessions.expire()

    async def _get_attachment(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["attachment_id"]
        attachment = self.messages.attachment(int(raw)) if raw.isdigit() else None
        if attachment is None or attachment.filename != request.match_info["filename"]:
            return error_response(404, "404: Not Found")
        return web.Response(
            body=attachment.data, headers={hdrs.CONTENT_TYPE: attachment.content_type}
        )
