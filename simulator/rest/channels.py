"""Channels and their messages: read a channel, post a message in it, read or edit one."""

from __future__ import annotations

from aiohttp import web

from simulator.messages import MessageLog, UnknownMessage
from simulator.payloads import PayloadFactory
from simulator.responses import json_response
from simulator.rest.bot_messages import BotMessages
from simulator.rest.errors import UNKNOWN_MESSAGE, ApiError
from simulator.rest.params import channel_param, snowflake_param
from simulator.world import World, guild_of


class ChannelRoutes:
    def __init__(
        self,
        world: World,
        payloads: PayloadFactory,
        messages: MessageLog,
        bot_messages: BotMessages,
    ) -> None:
        self.world = world
        self.payloads = payloads
        self.messages = messages
        self.bot_messages = bot_messages

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/channels/{channel_id}", self.get_channel),
            web.post("/channels/{channel_id}/messages", self.create_message),
            web.get("/channels/{channel_id}/messages/{message_id}", self.get_message),
            web.patch("/channels/{channel_id}/messages/{message_id}", self.edit_message),
        ]

    async def get_channel(self, request: web.Request) -> web.Response:
        channel_id = channel_param(request, self.messages)
        return json_response(
            self.payloads.channel(self.world.guild(guild_of(channel_id)), channel_id)
        )

    async def get_message(self, request: web.Request) -> web.Response:
        channel_id = channel_param(request, self.messages)
        try:
            message = self.messages.get(channel_id, snowflake_param(request, "message_id"))
        except UnknownMessage:
            raise ApiError(404, "Unknown Message", UNKNOWN_MESSAGE) from None
        return json_response(message)

    async def create_message(self, request: web.Request) -> web.Response:
        channel_id = channel_param(request, self.messages)
        body, files = await self.bot_messages.read_body(request)
        return json_response(self.bot_messages.post(channel_id, body, files))

    async def edit_message(self, request: web.Request) -> web.Response:
        channel_param(request, self.messages)  # an unknown channel is 404 before the message
        body, _ = await self.bot_messages.read_body(request)
        message_id = snowflake_param(request, "message_id")
        return json_response(self.bot_messages.edit(message_id, body))
