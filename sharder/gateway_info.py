"""What Discord says about the bot's gateway (``GET /gateway/bot``): at start-up the identify
buckets (``max_concurrency``) and the session start budget the identify gate keeps; for a
reshard, the shard count Discord recommends.

One request in the master's life: the standard library's client, on a thread, rather than an
HTTP client library that would stay in the master's memory (aiohttp: 9 MiB) for nothing else.
"""

from __future__ import annotations

import asyncio
import http.client
import urllib.error
import urllib.request
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class GatewayFacts:
    max_concurrency: int
    budget: SessionBudget
    recommended_shards: int


async def fetch(api_url: str, token: str, period: float) -> GatewayFacts:
    """What ``GET /gateway/bot`` says; ``GatewayUnavailable`` with the reason otherwise."""
    request = urllib.request.Request(
        f"{api_url}/gateway/bot", headers={"Authorization": f"Bot {token}"}
    )
    try:
        body = await asyncio.to_thread(read, request)
    except urllib.error.HTTPError as error:
        raise GatewayUnavailable(
            f"GET {api_url}/gateway/bot: {error.code} {error.read()[:200]!r}"
        ) from None
    except (OSError, ValueError, http.client.HTTPException) as error:  # URLError: an OSError
        raise GatewayUnavailable(f"GET {api_url}/gateway/bot: {error!r}") from None
    try:
        info = msgspec.json.decode(body, type=GatewayBot)
    except msgspec.DecodeError as error:
        raise GatewayUnavailable(f"GET {api_url}/gateway/bot answered {error}") from None
    limit = info.session_start_limit
    budget = SessionBudget(limit.total, limit.remaining, limit.reset_after / 1000, period)
    return GatewayFacts(limit.max_concurrency, budget, info.shards)


def read(request: urllib.request.Request) -> bytes:
    with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
        body: bytes = reply.read()
        return body
