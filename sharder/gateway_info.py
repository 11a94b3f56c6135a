"""What Discord says about the bot's gateway (``GET /gateway/bot``), read once at start-up: the
identify buckets (``max_concurrency``) and the session start budget the identify gate keeps."""

from __future__ import annotations

import aiohttp
import msgspec

from sharder.identify import SessionBudget

TIMEOUT = 15.0


class GatewayUnavailable(Exception):
    """Discord (or the simulator) did not say how to connect; the message says why."""


class SessionStartLimit(msgspec.Struct):
    total: int
    remaining: int
    reset_after: int  # milliseconds
    max_concurrency: int


class GatewayBot(msgspec.Struct):
    url: str
    shards: int
    session_start_limit: SessionStartLimit


async def fetch(api_url: str, token: str, period: float) -> tuple[int, SessionBudget]:
    """``(max_concurrency, budget)``; ``GatewayUnavailable`` with the reason otherwise."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as http,
            http.get(f"{api_url}/gateway/bot", headers={"Authorization": f"Bot {token}"}) as reply,
        ):
            body = await reply.read()
            if reply.status != 200:
                raise GatewayUnavailable(
                    f"GET {api_url}/gateway/bot: {reply.status} {body[:200]!r}"
                )
    except (aiohttp.ClientError, TimeoutError) as error:
        raise GatewayUnavailable(f"GET {api_url}/gateway/bot: {error!r}") from None
    try:
        info = msgspec.json.decode(body, type=GatewayBot)
    except msgspec.DecodeError as error:
        raise GatewayUnavailable(f"GET {api_url}/gateway/bot answered {error}") from None
    limit = info.session_start_limit
    budget = SessionBudget(limit.total, limit.remaining, limit.reset_after / 1000, period)
    return limit.max_concurrency, budget
