"""The simulated REST API under ``/api/v10``: the calls a bot makes, checked and rate limited.

Every call but the interaction and webhook ones (which carry their own token in the path, as on
Discord) needs ``Authorization: Bot TOKEN``. Every response carries the rate limit headers of
its bucket; a call over a bucket or the global limit, or to a route the control API forced into
a shared 429, gets a 429 with ``retry_after`` and ``global`` in its body and the limit's
``X-RateLimit-Scope``. Errors use Discord's JSON error codes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import BodyPartReader, hdrs, web

from simulator.config import SimulatorConfig
from simulator.gateway import Gateway
from simulator.messages import (
    Attachment,
    Interaction,
    MessageLog,
    UnknownChannel,
    UnknownInteraction,
    UnknownMessage,
)
from simulator.payloads import Payload, PayloadFactory, SnowflakeFactory, command_id
from simulator.ratelimit import RestRateLimiter
from simulator.responses import error_response, json_response
from simulator.stats import Stats
from simulator.world import Guild, World, guild_of

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_PREFIX = "/api/v10"
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_NONCE = 25
MAX_REQUEST_SIZE = 25 * 1024 * 1024  # Discord's attachment limit for bots
INTERACTION_RESPONSE_MESSAGE = 4  # CHANNEL_MESSAGE_WITH_SOURCE
INTERACTION_RESPONSE_TYPES = frozenset({1, 4, 5, 6, 7, 8, 9, 12})

# Discord's JSON error codes.
UNKNOWN_APPLICATION = 10002
UNKNOWN_CHANNEL = 10003
UNKNOWN_GUILD = 10004
UNKNOWN_MEMBER = 10007
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_EMOJI = 10014
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
EMPTY_MESSAGE = 50006
INVALID_FORM_BODY = 50035
INVALID_JSON = 50109
ALREADY_ACKNOWLEDGED = 40060

decode = msgspec.json.decode


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: int, errors: Payload | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.errors = errors

    @classmethod
    def invalid_field(cls, field: str, message: str) -> ApiError:
        errors = {field: {"_errors": [{"code": "BASE_TYPE_INVALID", "message": message}]}}
        return cls(400, "Invalid Form Body", INVALID_FORM_BODY, errors)

    def response(self) -> web.Response:
        body: Payload = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        return json_response(body, self.status)


def parse_snowflake(raw: object, field: str) -> int:
    """A snowflake from a path, query or body value (a string of digits, or an int)."""
    text = str(raw) if type(raw) is int else raw
    if not (isinstance(text, str) and text.isascii() and text.isdigit()) or int(text) >= 1 << 64:
        raise ApiError.invalid_field(field, f"Value {raw!r} is not snowflake.")
    return int(text)


def snowflake_param(request: web.Request, name: str) -> int:
    return parse_snowflake(request.match_info[name], name)


def after_param(request: web.Request) -> int:
    return parse_snowflake(request.query.get("after") or "0", "after")


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
    ) -> None:
        self.config = config
        self.world = world
        self.payloads = payloads
        self.gateway = gateway
        self.messages = messages
        self.stats = stats
        self.snowflakes = snowflakes
        self.limiter = RestRateLimiter(
            config.rest_route_limit, config.rest_route_window, config.rest_global_limit
        )
        self.commands: dict[int | None, list[Payload]] = {}  # by guild; None: global commands
        self.served: frozenset[tuple[str, str]] = frozenset()  # (method, template), once built
        self._authorization = f"Bot {world.token()}"

    def application(self) -> web.Application:
        api = web.Application(middlewares=[self._guard], client_max_size=MAX_REQUEST_SIZE)
        routes = [
            web.get("/gateway", self.get_gateway),
            web.get("/gateway/bot", self.get_gateway_bot),
            web.get("/users/@me", self.get_own_user),
            web.get("/users/@me/guilds", self.get_own_guilds),
            web.get("/users/{user_id}", self.get_user),
            web.get("/oauth2/applications/@me", self.get_application),
            web.get("/guilds/{guild_id}", self.get_guild),
            web.get("/guilds/{guild_id}/channels", self.get_guild_channels),
            web.get("/guilds/{guild_id}/roles", self.get_guild_roles),
            web.get("/guilds/{guild_id}/emojis", self.get_guild_emojis),
            web.get("/guilds/{guild_id}/emojis/{emoji_id}", self.get_guild_emoji),
            web.get("/guilds/{guild_id}/members", self.list_members),
            web.get("/guilds/{guild_id}/members/{user_id}", self.get_member),
            web.get("/channels/{channel_id}", self.get_channel),
            web.post("/channels/{channel_id}/messages", self.create_message),
            web.get("/channels/{channel_id}/messages/{message_id}", self.get_message),
            web.patch("/channels/{channel_id}/messages/{message_id}", self.edit_message),
            web.post("/interactions/{interaction_id}/{token}/callback", self.interaction_callback),
            web.post("/webhooks/{webhook_id}/{token}", self.create_followup),
            web.get("/webhooks/{webhook_id}/{token}/messages/@original", self.get_original),
            web.patch("/webhooks/{webhook_id}/{token}/messages/@original", self.edit_original),
            web.get("/applications/{application_id}/commands", self.get_commands),
            web.put("/applications/{application_id}/commands", self.put_commands),
            web.get("/applications/{application_id}/guilds/{guild_id}/commands", self.get_commands),
            web.put("/applications/{application_id}/guilds/{guild_id}/commands", self.put_commands),
        ]
        api.add_routes(routes)
        self.served = frozenset((route.method, route.path) for route in routes)
        # The control API reaches this object through the app it mounts under /api/v10.
        return api

    # -- the guard every call passes -----------------------------------------------------------

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.stats.rest_requests += 1
        resource = request.match_info.route.resource
        template = resource.canonical.removeprefix(API_PREFIX) if resource is not None else ""
        carries_own_token = template.startswith(("/interactions/", "/webhooks/"))
        if not carries_own_token and request.headers.get(hdrs.AUTHORIZATION) != self._authorization:
            self.stats.rest_401 += 1
            return error_response(401, "401: Unauthorized")
        if request.match_info.http_exception is not None:
            error = request.match_info.http_exception
            return error_response(error.status, f"{error.status}: {error.reason}")
        verdict = self.limiter.check(
            request.method,
            template,
            dict(request.match_info),
            exempt_from_global=template.startswith("/interactions/"),
        )
        if not verdict.allowed:
            self.stats.rest_429 += 1
            self.stats.rest_global_429 += verdict.scope == "global"
            self.stats.rest_shared_429 += verdict.scope == "shared"
            body = {
                "message": "You are being rate limited.",
                "retry_after": round(verdict.retry_after, 3),
                "global": verdict.scope == "global",
                "code": 0,
            }
            return json_response(body, 429, verdict.headers)
        try:
            response = await handler(request)
        except ApiError as error:
            response = error.response()
        response.headers.update(verdict.headers)
        return response

    # -- gateway, users and the application ---------------------------------------------------

    async def get_gateway(self, request: web.Request) -> web.Response:
        return json_response({"url": self.gateway.url})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        budget = self.gateway.session_budget
        return json_response(
            {
                "url": self.gateway.url,
                "shards": self.config.shards,
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
        limit = self._limit(request, default=200, maximum=200)
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

    # -- guild and channel reads --------------------------------------------------------------

    async def get_guild(self, request: web.Request) -> web.Response:
        return json_response(self.payloads.guild(self._guild(request)))

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        return json_response([self.payloads.channel(guild, cid) for cid in guild.channel_ids])

    async def get_guild_roles(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        return json_response([self.payloads.role(guild, rid) for rid in guild.role_ids])

    async def get_guild_emojis(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        return json_response([self.payloads.emoji(emoji) for emoji in guild.emojis])

    async def get_guild_emoji(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        emoji_id = snowflake_param(request, "emoji_id")
        for emoji in guild.emojis:
            if emoji.id == emoji_id:
                return json_response(self.payloads.emoji(emoji))
        raise ApiError(404, "Unknown Emoji", UNKNOWN_EMOJI)

    async def list_members(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        limit = self._limit(request, default=1, maximum=1000)
        after = after_param(request)
        members = sorted(user_id for user_id in guild.member_ids if user_id > after)[:limit]
        return json_response([self.payloads.member(guild, user_id) for user_id in members])

    async def get_member(self, request: web.Request) -> web.Response:
        guild = self._guild(request)
        user_id = snowflake_param(request, "user_id")
        if user_id not in guild.member_ids:
            raise ApiError(404, "Unknown Member", UNKNOWN_MEMBER)
        return json_response(self.payloads.member(guild, user_id))

    async def get_channel(self, request: web.Request) -> web.Response:
        channel_id = self._channel(request)
        return json_response(
            self.payloads.channel(self.world.guild(guild_of(channel_id)), channel_id)
        )

    # -- messages ------------------------------------------------------------------------------

    async def get_message(self, request: web.Request) -> web.Response:
        channel_id = self._channel(request)
        try:
            message = self.messages.get(channel_id, snowflake_param(request, "message_id"))
        except UnknownMessage:
            raise ApiError(404, "Unknown Message", UNKNOWN_MESSAGE) from None
        return json_response(message)

    async def create_message(self, request: web.Request) -> web.Response:
        channel_id = self._channel(request)
        body, files = await self._message_body(request)
        return json_response(self._post(channel_id, body, files))

    async def edit_message(self, request: web.Request) -> web.Response:
        self._channel(request)
        body, _ = await self._message_body(request)
        message_id = snowflake_param(request, "message_id")
        return json_response(self._edit(message_id, body))

    # -- interactions ---------------------------------------------------------------------------

    async def interaction_callback(self, request: web.Request) -> web.Response:
        interaction = self._interaction(request.match_info["token"])
        if str(interaction.id) != request.match_info["interaction_id"]:
            raise ApiError(404, "Unknown interaction", UNKNOWN_INTERACTION)
        if interaction.acknowledged:
            raise ApiError(400, "Interaction has already been acknowledged.", ALREADY_ACKNOWLEDGED)
        body, files = await self._message_body(request)
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
            message = self._post(interaction.channel_id, data, files, interaction=interaction)
            interaction.original_message_id = int(message["id"])
        interaction.acknowledged = True
        self.stats.interaction_responses += 1
        return web.Response(status=204)

    async def create_followup(self, request: web.Request) -> web.Response:
        interaction = self._webhook_interaction(request)
        body, files = await self._message_body(request)
        return json_response(
            self._post(interaction.channel_id, body, files, interaction=interaction)
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
        body, files = await self._message_body(request)
        if interaction.original_message_id is None:
            # Editing the original of a deferred response is how the answer arrives.
            message = self._post(interaction.channel_id, body, files, interaction=interaction)
            interaction.original_message_id = int(message["id"])
            return json_response(message)
        return json_response(self._edit(interaction.original_message_id, body))

    # -- application commands ----------------------------------------------------------------------

    async def get_commands(self, request: web.Request) -> web.Response:
        self._application(request)
        return json_response(self.commands.get(self._command_scope(request), []))

    async def put_commands(self, request: web.Request) -> web.Response:
        self._application(request)
        scope = self._command_scope(request)
        body = await self._json(request)
        if not isinstance(body, list):
            raise ApiError.invalid_field("_root", "Must be an array of commands.")
        commands = [self._command(scope, command, index) for index, command in enumerate(body)]
        self.commands[scope] = commands
        return json_response(commands)

    # -- helpers ---------------------------------------------------------------------------------

    def _guild(self, request: web.Request) -> Guild:
        guild_id = snowflake_param(request, "guild_id")
        if not self.world.has_guild(guild_id):
            raise ApiError(404, "Unknown Guild", UNKNOWN_GUILD)
        return self.world.guild(guild_id)

    def _channel(self, request: web.Request) -> int:
        channel_id = snowflake_param(request, "channel_id")
        try:
            self.messages.check_channel(channel_id)
        except UnknownChannel:
            raise ApiError(404, "Unknown Channel", UNKNOWN_CHANNEL) from None
        return channel_id

    def _application(self, request: web.Request) -> None:
        if snowflake_param(request, "application_id") != self.world.bot_id:
            raise ApiError(404, "Unknown Application", UNKNOWN_APPLICATION)

    def _command_scope(self, request: web.Request) -> int | None:
        if "guild_id" not in request.match_info:
            return None
        return int(self._guild(request).id)

    def _interaction(self, token: str) -> Interaction:
        try:
            return self.messages.interaction(token)
        except UnknownInteraction:
            raise ApiError(404, "Unknown interaction", UNKNOWN_INTERACTION) from None

    def _webhook_interaction(self, request: web.Request) -> Interaction:
        if snowflake_param(request, "webhook_id") != self.world.bot_id:
            raise ApiError(404, "Unknown Webhook", UNKNOWN_WEBHOOK)
        return self._interaction(request.match_info["token"])

    @staticmethod
    def _limit(request: web.Request, *, default: int, maximum: int) -> int:
        raw = request.query.get("limit", str(default))
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
            raise ApiError.invalid_field("limit", f"Must be between 1 and {maximum}.")
        return int(raw)

    def _partial_guild(self, guild_id: int) -> Payload:
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

    async def _json(self, request: web.Request) -> Any:
        try:
            return decode(await request.read())
        except msgspec.DecodeError:
            raise ApiError(400, "The request body contains invalid JSON.", INVALID_JSON) from None

    async def _message_body(self, request: web.Request) -> tuple[Payload, list[Attachment]]:
        """A JSON body, or multipart with ``payload_json`` and ``files[n]`` parts."""
        files: list[Attachment] = []
        if request.content_type != "multipart/form-data":
            body = await self._json(request)
        else:
            body = {}
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                if part.name == "payload_json":
                    try:
                        body = decode(await part.read())
                    except msgspec.DecodeError:
                        raise ApiError(
                            400, "payload_json is not valid JSON.", INVALID_JSON
                        ) from None
                elif part.name is not None and part.name.startswith("files["):
                    content_type = part.headers.get(hdrs.CONTENT_TYPE, "application/octet-stream")
                    files.append(
                        Attachment(
                            id=self.snowflakes.next(),
                            filename=part.filename or "file",
                            content_type=content_type,
                            data=bytes(await part.read(decode=True)),
                        )
                    )
        if not isinstance(body, dict):
            raise ApiError.invalid_field("_root", "Must be a JSON object.")
        return body, files

    def _post(
        self, channel_id: int, body: Payload, files: list[Attachment], interaction: Any = None
    ) -> Payload:
        content = body.get("content") or ""
        embeds = body.get("embeds") or []
        if not isinstance(content, str) or len(content) > MAX_CONTENT:
            raise ApiError.invalid_field("content", f"Must be a string of {MAX_CONTENT} or fewer.")
        if not isinstance(embeds, list) or len(embeds) > MAX_EMBEDS:
            raise ApiError.invalid_field("embeds", f"Must be a list of {MAX_EMBEDS} or fewer.")
        if not (content or embeds or files):
            raise ApiError(400, "Cannot send an empty message", EMPTY_MESSAGE)
        nonce = body.get("nonce")
        if nonce is not None and not (
            (type(nonce) is int) or (isinstance(nonce, str) and len(nonce) <= MAX_NONCE)
        ):
            raise ApiError.invalid_field(
                "nonce", f"Must be an integer or a string of {MAX_NONCE} or fewer."
            )
        if nonce is not None and body.get("enforce_nonce"):
            # Discord answers a retry with the message the first attempt created.
            existing = self.messages.by_nonce(channel_id, nonce)
            if existing is not None:
                return existing
        reference = self._reference(channel_id, body.get("message_reference"))
        return self.messages.post(
            channel_id,
            self.world.bot_id,
            content,
            embeds=embeds,
            attachments=files,
            reference=reference,
            interaction=interaction,
            nonce=nonce,
        )

    def _reference(self, channel_id: int, reference: object) -> Payload | None:
        if reference is None:
            return None
        if not isinstance(reference, dict) or "message_id" not in reference:
            raise ApiError.invalid_field("message_reference", "Must name a message_id.")
        message_id = parse_snowflake(reference["message_id"], "message_reference.message_id")
        reference_channel = parse_snowflake(
            reference.get("channel_id", channel_id), "message_reference.channel_id"
        )
        try:
            self.messages.get(reference_channel, message_id)
        except UnknownMessage:
            if reference.get("fail_if_not_exists", True):
                raise ApiError.invalid_field("message_reference", "Unknown message") from None
            return None
        return {
            "type": 0,
            "message_id": str(message_id),
            "channel_id": str(channel_id),
            "guild_id": str(guild_of(channel_id)),
        }

    def _edit(self, message_id: int, body: Payload) -> Payload:
        content = body.get("content")
        if content is not None and (not isinstance(content, str) or len(content) > MAX_CONTENT):
            raise ApiError.invalid_field("content", f"Must be a string of {MAX_CONTENT} or fewer.")
        try:
            return self.messages.edit(message_id, content, body.get("embeds"))
        except UnknownMessage:
            raise ApiError(404, "Unknown Message", UNKNOWN_MESSAGE) from None

    def _command(self, scope: int | None, command: object, index: int) -> Payload:
        if not isinstance(command, dict) or not isinstance(command.get("name"), str):
            raise ApiError.invalid_field(str(index), "Each command needs a name.")
        name = command["name"]
        payload: Payload = {
            "id": str(command_id(self.world.bot_id, name)),
            "application_id": str(self.world.bot_id),
            "type": command.get("type", 1),
            "name": name,
            "name_localizations": command.get("name_localizations"),
            "description": command.get("description", ""),
            "description_localizations": command.get("description_localizations"),
            "options": command.get("options", []),
            "default_member_permissions": command.get("default_member_permissions"),
            "dm_permission": command.get("dm_permission", True),
            "nsfw": command.get("nsfw", False),
            "integration_types": command.get("integration_types", [0]),
            "contexts": command.get("contexts"),
            "version": str(self.snowflakes.next()),
        }
        if scope is not None:
            payload["guild_id"] = str(scope)
        return payload
