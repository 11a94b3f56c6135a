"""Answering interactions: the callback, followups and the ``@original`` response.

These routes carry the interaction's token in the path instead of the bot's in a header, as on
Discord, so a callback works for a client that holds no bot token.
"""

from __future__ import annotations

from typing import Final

from aiohttp import web

from simulator.messages import Interaction, MessageLog, UnknownInteraction
from simulator.responses import json_response
from simulator.rest.bot_messages import BotMessages
from simulator.rest.errors import (
    ALREADY_ACKNOWLEDGED,
    UNKNOWN_INTERACTION,
    UNKNOWN_MESSAGE,
    UNKNOWN_WEBHOOK,
    ApiError,
)
from simulator.rest.params import snowflake_param
from simulator.stats import Stats
from simulator.world import World

INTERACTION_RESPONSE_MESSAGE: Final = 4  # CHANNEL_MESSAGE_WITH_SOURCE
INTERACTION_RESPONSE_TYPES: Final = frozenset({1, 4, 5, 6, 7, 8, 9, 12})


class InteractionRoutes:
    def __init__(
        self, world: World, messages: MessageLog, bot_messages: BotMessages, stats: Stats
    ) -> None:
        self.world = world
        self.messages = messages
        self.bot_messages = bot_messages
        self.stats = stats

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/interactions/{interaction_id}/{token}/callback", self.interaction_callback),
            web.post("/webhooks/{webhook_id}/{token}", self.create_followup),
            web.get("/webhooks/{webhook_id}/{token}/messages/@original", self.get_original),
            web.patch("/webhooks/{webhook_id}/{token}/messages/@original", self.edit_original),
        ]

    async def interaction_callback(self, request: web.Request) -> web.Response:
        interaction = self._interaction(request.match_info["token"])
        if str(interaction.id) != request.match_info["interaction_id"]:
            raise ApiError(404, "Unknown interaction", UNKNOWN_INTERACTION)
        if interaction.acknowledged:
            raise ApiError(400, "Interaction has already been acknowledged.", ALREADY_ACKNOWLEDGED)
        body, files = await self.bot_messages.read_body(request)
        response_type = body.get("type")
        if response_type not in INTERACTION_RESPONSE_TYPES:
            raise ApiError.invalid_field(
                "type", f"Value {response_type!r} is not a valid enum value."
            )
        if response_type == INTERACTION_RESPONSE_MESSAGE:
            data = body.get("data")
            if not isinstance(data, dict):
                raise ApiError.invalid_field("data", "This field is required")
            # Posted before the interaction counts as answered: a refused answer may be retried.
            message = self.bot_messages.post(interaction.channel_id, data, files, interaction)
            interaction.original_message_id = int(message["id"])
        interaction.acknowledged = True
        self.stats.interaction_responses += 1
        return web.Response(status=204)

    async def create_followup(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        body, files = await self.bot_messages.read_body(request)
        return json_response(
            self.bot_messages.post(interaction.channel_id, body, files, interaction)
        )

    async def get_original(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        if interaction.original_message_id is None:
            raise ApiError(404, "Unknown Message", UNKNOWN_MESSAGE)
        return json_response(
            self.messages.get(interaction.channel_id, interaction.original_message_id)
        )

    async def edit_original(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        body, files = await self.bot_messages.read_body(request)
        if interaction.original_message_id is None:
            # Editing the original of a deferred response is how the answer arrives.
            message = self.bot_messages.post(interaction.channel_id, body, files, interaction)
            interaction.original_message_id = int(message["id"])
            return json_response(message)
        return json_response(self.bot_messages.edit(interaction.original_message_id, body))

    def _interaction(self, token: str) -> Interaction:
        try:
            return self.messages.interaction(token)
        except UnknownInteraction:
            raise ApiError(404, "Unknown interaction", UNKNOWN_INTERACTION) from None

    def _webhook_interaction(self, request: web.Request) -> Interaction:
        # An interaction's webhook is the application's: its id is the bot's.
        if snowflake_param(request, "webhook_id") != self.world.bot_id:
            raise ApiError(404, "Unknown Webhook", UNKNOWN_WEBHOOK)
        return self._interaction(request.match_info["token"])
