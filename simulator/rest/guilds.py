"""Guild reads: a guild, its channels, roles and emoji, and its members one or a page at a time."""

from __future__ import annotations

from aiohttp import web

from simulator.payloads import PayloadFactory
from simulator.responses import json_response
from simulator.rest.errors import UNKNOWN_EMOJI, UNKNOWN_MEMBER, ApiError
from simulator.rest.params import after_param, guild_param, limit_param, snowflake_param
from simulator.world import World


class GuildRoutes:
    def __init__(self, world: World, payloads: PayloadFactory) -> None:
        self.world = world
        self.payloads = payloads

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/guilds/{guild_id}", self.get_guild),
            web.get("/guilds/{guild_id}/channels", self.get_guild_channels),
            web.get("/guilds/{guild_id}/roles", self.get_guild_roles),
            web.get("/guilds/{guild_id}/emojis", self.get_guild_emojis),
            web.get("/guilds/{guild_id}/emojis/{emoji_id}", self.get_guild_emoji),
            web.get("/guilds/{guild_id}/members", self.list_members),
            web.get("/guilds/{guild_id}/members/{user_id}", self.get_member),
        ]

    async def get_guild(self, request: web.Request) -> web.Response:
        return json_response(self.payloads.guild(guild_param(request, self.world)))

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        guild = guild_param(request, self.world)
        return json_response([self.payloads.channel(guild, cid) for cid in guild.channel_ids])

    async def get_guild_roles(self, request: web.Request) -> web.Response:
        guild = guild_param(request, self.world)
        return json_response([self.payloads.role(guild, rid) for rid in guild.role_ids])

    async def get_guild_emojis(self, request: web.Request) -> web.Response:
        guild = guild_param(request, self.world)
        return json_response([self.payloads.emoji(emoji) for emoji in guild.emojis])

    async def get_guild_emoji(self, request: web.Request) -> web.Response:
        guild = guild_param(request, self.world)
        emoji_id = snowflake_param(request, "emoji_id")
        for emoji in guild.emojis:
            if emoji.id == emoji_id:
                return json_response(self.payloads.emoji(emoji))
        raise ApiError(404, "Unknown Emoji", UNKNOWN_EMOJI)

    async def list_members(self, request: web.Request) -> web.Response:
        guild = guild_param(request, self.world)
        # Discord's default page is a single member: a client that wants more must say so.
        limit = limit_param(request, default=1, maximum=1000)
        after = after_param(request)
        members = sorted(user_id for user_id in guild.member_ids if user_id > after)[:limit]
        return json_response([self.payloads.member(guild, user_id) for user_id in members])

    async def get_member(self, request: web.Request) -> web.Response:
        guild = guild_param(request, self.world)
        user_id = snowflake_param(request, "user_id")
        if user_id not in guild.member_ids:
            raise ApiError(404, "Unknown Member", UNKNOWN_MEMBER)
        return json_response(self.payloads.member(guild, user_id))
