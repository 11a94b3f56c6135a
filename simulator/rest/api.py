"""The REST application: the guard in front, then every resource's routes under one prefix."""

from __future__ import annotations

import time

from aiohttp import web

from simulator.config import SimulatorConfig
from simulator.gateway.hub import Gateway
from simulator.limits import Clock
from simulator.messages import MessageLog
from simulator.payloads import PayloadFactory, SnowflakeFactory
from simulator.ratelimit import RestRateLimiter
from simulator.rest import MAX_REQUEST_SIZE
from simulator.rest.account import AccountRoutes
from simulator.rest.bot_messages import BotMessages
from simulator.rest.channels import ChannelRoutes
from simulator.rest.commands import CommandRoutes
from simulator.rest.guard import RestGuard
from simulator.rest.guilds import GuildRoutes
from simulator.rest.interactions import InteractionRoutes
from simulator.stats import Stats
from simulator.world import World


class RestApi:
    def __init__(
        self,
        config: SimulatorConfig,
        world: World,
        payloads: PayloadFactory,
        gateway: Gateway,
        messages: MessageLog,
        stats: Stats,
        snowflakes: SnowflakeFactory,
        clock: Clock = time.monotonic,
    ) -> None:
        self.limiter = RestRateLimiter(
            config.rest_route_limit, config.rest_route_window, config.rest_global_limit, clock
        )
        self.guard = RestGuard(world.token(), self.limiter, stats)
        bot_messages = BotMessages(world, messages, snowflakes)
        self.commands = CommandRoutes(world, snowflakes)
        self._route_groups = (
            AccountRoutes(config, world, payloads, gateway),
            GuildRoutes(world, payloads),
            ChannelRoutes(world, payloads, messages, bot_messages),
            InteractionRoutes(world, messages, bot_messages, stats),
            self.commands,
        )
        # (method, template) of every route, once built: the control API may force a shared
        # 429 only on a route that exists.
        self.served: frozenset[tuple[str, str]] = frozenset()

    def application(self) -> web.Application:
        api = web.Application(middlewares=[self.guard.middleware], client_max_size=MAX_REQUEST_SIZE)
        routes = [route for group in self._route_groups for route in group.routes()]
        api.add_routes(routes)
        self.served = frozenset((route.method, route.path) for route in routes)
        return api
