"""What the bot asks about itself: where the gateway is and how many sessions it may start, its
user and guilds, its application, and other users."""

from __future__ import annotations

from aiohttp import web

from simulator.config import SimulatorConfig
from simulator.gateway.hub import Gateway
from simulator.gateway.sharding import recommended_shards
from simulator.payloads import Payload, PayloadFactory
from simulator.responses import json_response
from simulator.rest.errors import UNKNOWN_USER, ApiError
from simulator.rest.params import after_param, limit_param, snowflake_param
from simulator.world import World


class AccountRoutes:
    def __init__(
        self, config: SimulatorConfig, world: World, payloads: PayloadFactory, gateway: Gateway
    ) -> None:
        self.config = config
        self.world = world
        self.payloads = payloads
        self.gateway = gateway

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/gateway", self.get_gateway),
            web.get("/gateway/bot", self.get_gateway_bot),
            web.get("/users/@me", self.get_own_user),
            web.get("/users/@me/guilds", self.get_own_guilds),
            web.get("/users/{user_id}", self.get_user),
            web.get("/oauth2/applications/@me", self.get_application),
        ]

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway.url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        budget = self.gateway.session_budget
        return json_response(
            {
                "url": self.gateway.url,
                "shards": recommended_shards(self.config, len(self.world.guild_ids)),
                "session_start_limit": {
                    "total": budget.limit,
                    "remaining": budget.remaining(),
                    "reset_after": int(budget.reset_after() * 1000),
                    "max_concurrency": self.config.max_concurrency,
                },
            }
        )

    async def get_own_user(self, request: web.Request) -> web.Response:
        return json_response(self.payloads.own_user())

    async def get_own_guilds(self, request: web.Request) -> web.Response:
        limit = limit_param(request, default=200, maximum=200)
        after = after_param(request)
        guilds = [guild_id for guild_id in self.world.guild_ids if guild_id > after][:limit]
        return json_response([self._partial_guild(guild_id) for guild_id in guilds])

    async def get_user(self, request: web.Request) -> web.Response:
        user_id = snowflake_param(request, "user_id")
        if not self.world.has_user(user_id):
            raise ApiError(404, "Unknown User", UNKNOWN_USER)
        return json_response(self.payloads.user(user_id))

    async def get_application(self, request: web.Request) -> web.Response:
        return json_response(self.payloads.application())

    def _partial_guild(self, guild_id: int) -> Payload:
        """A guild as the bot's guild list shows it: a few fields, not the whole guild."""
        guild = self.world.guild(guild_id)
        return {
            "id": str(guild_id),
            "name": guild.name,
            "icon": None,
            "banner": None,
            "owner": guild.owner_id == self.world.bot_id,
            "permissions": "8",
            "features": [],
        }
