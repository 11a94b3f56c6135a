"""Reading a request: path and query parameters and JSON bodies, each refused as Discord would.

A parameter that names a guild or channel is resolved here too, so that every route answers an
unknown one with the same 404 and code.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from simulator.messages import MessageLog, UnknownChannel
from simulator.rest.errors import INVALID_JSON, UNKNOWN_CHANNEL, UNKNOWN_GUILD, ApiError
from simulator.world import Guild, World

decode = msgspec.json.decode


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


def limit_param(request: web.Request, *, default: int, maximum: int) -> int:
    raw = request.query.get("limit", str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise ApiError.invalid_field("limit", f"Must be between 1 and {maximum}.")
    return int(raw)


def guild_param(request: web.Request, world: World) -> Guild:
    guild_id = snowflake_param(request, "guild_id")
    if not world.has_guild(guild_id):
        raise ApiError(404, "Unknown Guild", UNKNOWN_GUILD)
    return world.guild(guild_id)


def channel_param(request: web.Request, messages: MessageLog) -> int:
    channel_id = snowflake_param(request, "channel_id")
    try:
        messages.check_channel(channel_id)
    except UnknownChannel:
        raise ApiError(404, "Unknown Channel", UNKNOWN_CHANNEL) from None
    return channel_id


async def read_json(request: web.Request) -> Any:
    try:
        return decode(await request.read())
    except msgspec.DecodeError:
        raise ApiError(400, "The request body contains invalid JSON.", INVALID_JSON) from None
