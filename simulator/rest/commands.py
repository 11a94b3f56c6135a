"""Application commands, global and per guild: read, and overwritten in bulk as a bot syncs them.

Commands are kept per scope (a guild, or None for global ones); a PUT replaces its scope's whole
set, as Discord's bulk overwrite does, and gives every command a stable id from its name.
"""

from __future__ import annotations

from aiohttp import web

from simulator.payloads import Payload, SnowflakeFactory, command_id
from simulator.responses import json_response
from simulator.rest.errors import UNKNOWN_APPLICATION, ApiError
from simulator.rest.params import guild_param, read_json, snowflake_param
from simulator.world import World


class CommandRoutes:
    def __init__(self, world: World, snowflakes: SnowflakeFactory) -> None:
        self.world = world
        self.snowflakes = snowflakes
        self.commands: dict[int | None, list[Payload]] = {}  # by guild; None: global commands

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/applications/{application_id}/commands", self.get_commands),
            web.put("/applications/{application_id}/commands", self.put_commands),
            web.get("/applications/{application_id}/guilds/{guild_id}/commands", self.get_commands),
            web.put("/applications/{application_id}/guilds/{guild_id}/commands", self.put_commands),
        ]

    async def get_commands(self, request: web.Request) -> web.Response:
        self._application(request)
        return json_response(self.commands.get(self._scope(request), []))

    async def put_commands(self, request: web.Request) -> web.Response:
        self._application(request)
        scope = self._scope(request)
        body = await read_json(request)
        if not isinstance(body, list):
            raise ApiError.invalid_field("_root", "Must be an array of commands.")
        commands = [self._command(scope, command, index) for index, command in enumerate(body)]
        self.commands[scope] = commands
        return json_response(commands)

    def _application(self, request: web.Request) -> None:
        if snowflake_param(request, "application_id") != self.world.bot_id:
            raise ApiError(404, "Unknown Application", UNKNOWN_APPLICATION)

    def _scope(self, request: web.Request) -> int | None:
        if "guild_id" not in request.match_info:
            return None
        return int(guild_param(request, self.world).id)

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
