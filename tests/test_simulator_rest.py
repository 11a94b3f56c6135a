"""The simulator's REST API over real HTTP: auth, rate limits, messages, reads, interactions.

Every test runs its own in-process simulator on a port the OS picks. The rate limit tests run
it on virtual time (``tests/virtual_time.py``): no time passes between calls unless the test
advances it, so a limit is broken exactly, and a window is crossed with ``advance``, just before
and just after it ends, without waiting. The last tests point hikari's real REST client at it:
its entity factory must parse every response, and it must pace itself by the rate limit headers
without being told 429; hikari keeps its limits by the wall clock, so those run in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import hikari
import msgspec
import pytest
from multidict import CIMultiDictProxy

from simulator.rest.errors import (
    ALREADY_ACKNOWLEDGED,
    EMPTY_MESSAGE,
    INVALID_FORM_BODY,
    INVALID_JSON,
    UNKNOWN_APPLICATION,
    UNKNOWN_CHANNEL,
    UNKNOWN_EMOJI,
    UNKNOWN_GUILD,
    UNKNOWN_INTERACTION,
    UNKNOWN_MEMBER,
    UNKNOWN_MESSAGE,
    UNKNOWN_USER,
    UNKNOWN_WEBHOOK,
)
from simulator.server import Simulator
from simulator.world import EMOJI_BASE, user_id
from tests.gateway_client import RawGatewayClient
from tests.simulation import running_simulator
from tests.virtual_time import advance

GUILDS = 4
# Limits high enough that only the rate limit tests ever meet them.
UNLIMITED: dict[str, Any] = {"rest_route_limit": 10_000, "rest_global_limit": 10_000}
PNG_BYTES = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=15)

UNAUTHORIZED = {"message": "401: Unauthorized", "code": 0}


@dataclass(frozen=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any  # decoded JSON, or the text of a body that is not JSON (a 500 page)


@dataclass
class Api:
    """One simulator and an HTTP session that calls it as a bot (or, when asked, as nobody)."""

    sim: Simulator
    http: aiohttp.ClientSession

    @property
    def bot_id(self) -> int:
        return self.sim.world.bot_id

    def guild_at(self, index: int = 0) -> int:
        return self.sim.world.guild_ids[index]

    def channel_of(self, guild_id: int, index: int = 0) -> int:
        return self.sim.world.guild(guild_id).channel_ids[index]

    async def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = "",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Reply:
        """``path`` under /api/v10; ``token`` "" means the bot's, None no Authorization at all."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bot {token or self.sim.token}"
        return await self.fetch(method, f"{self.sim.rest_url}{path}", headers=sent, **kwargs)

    async def control(self, method: str, path: str, body: object = None) -> Reply:
        return await self.fetch(method, f"{self.sim.control_url}{path}", json=body)

    async def fetch(self, method: str, url: str, **kwargs: Any) -> Reply:
        async with self.http.request(method, url, **kwargs) as response:
            raw = await response.read()
            body: Any = raw.decode(errors="replace")
            if response.content_type == "application/json":
                body = msgspec.json.decode(raw)
            return Reply(response.status, response.headers, body)

    async def post_message(self, channel_id: int, content: str, **extra: Any) -> Reply:
        return await self.call(
            "POST", f"/channels/{channel_id}/messages", json={"content": content, **extra}
        )

    async def inject_user_message(self, channel_id: int, content: str) -> int:
        reply = await self.control(
            "POST", "/messages", {"channel_id": channel_id, "content": content}
        )
        assert reply.status == 200, reply
        message_id: int = reply.body["id"]
        return message_id

    async def bot_messages(self, query: str = "") -> list[dict[str, Any]]:
        reply = await self.control("GET", f"/messages{query}")
        assert reply.status == 200, reply
        listing: list[dict[str, Any]] = reply.body
        return listing


@contextlib.asynccontextmanager
async def simulator_api(**settings: Any) -> AsyncIterator[Api]:
    async with (
        running_simulator(**{"guilds": GUILDS, **settings}) as sim,
        aiohttp.ClientSession(timeout=HTTP_TIMEOUT) as http,
    ):
        yield Api(sim, http)


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    async with simulator_api(**UNLIMITED) as api:
        yield api


def assert_error(reply: Reply, status: int, code: int) -> None:
    assert reply.status == status, reply
    assert reply.headers["Content-Type"] == "application/json", reply
    assert reply.body["code"] == code, reply
    assert isinstance(reply.body["message"], str) and reply.body["message"], reply


# -- authorization ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bot wrong.token.value", "Bearer {token}", "{token}", "bot {token}"],
    ids=["missing", "wrong-token", "bearer", "no-scheme", "lowercase-scheme"],
)
async def test_every_api_route_without_the_bot_token_is_401_json(
    api: Api, authorization: str | None
) -> None:
    guild_id = api.guild_at(0)
    channel_id = api.channel_of(guild_id)
    routes = [
        ("GET", "/gateway"),
        ("GET", "/gateway/bot"),
        ("GET", "/users/@me"),
        ("GET", "/oauth2/applications/@me"),
        ("GET", f"/guilds/{guild_id}"),
        ("GET", f"/guilds/{guild_id}/members"),
        ("GET", f"/channels/{channel_id}"),
        ("POST", f"/channels/{channel_id}/messages"),
        ("PUT", f"/applications/{api.bot_id}/commands"),
    ]
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.format(token=api.sim.token)
    for method, path in routes:
        reply = await api.call(method, path, token=None, headers=headers, json={"content": "x"})
        assert reply.status == 401, (method, path, reply)
        assert reply.headers["Content-Type"] == "application/json"  # exactly: no charset
        assert reply.body == UNAUTHORIZED
    assert api.sim.stats.rest_401 == len(routes)
    assert api.sim.stats.bot_messages == 0


async def test_the_bot_token_is_accepted_and_not_counted_as_a_401(api: Api) -> None:
    reply = await api.call("GET", "/users/@me")
    assert reply.status == 200, reply
    assert reply.headers["Content-Type"] == "application/json"
    assert api.sim.stats.rest_401 == 0
    assert api.sim.stats.rest_requests == 1


# -- gateway, user and application ----------------------------------------------------------------


async def test_gateway_bot_reports_url_shards_and_the_session_start_limit() -> None:
    settings = {"shards": 3, "max_concurrency": 2, "session_start_total": 7}
    async with simulator_api(session_start_reset=600.0, **settings) as api:
        reply = await api.call("GET", "/gateway/bot")
        assert reply.status == 200, reply
        assert reply.body["url"] == api.sim.gateway_url
        assert reply.body["shards"] == 3
        limit = reply.body["session_start_limit"]
        assert limit["total"] == limit["remaining"] == 7
        assert limit["max_concurrency"] == 2
        assert 0 <= limit["reset_after"] <= 600_000

        # A session started: one fewer left, and the budget's window (in ms) is running.
        client = await RawGatewayClient.connect(api.sim.gateway_url)
        try:
            await client.identify(api.sim.token)
        finally:
            await client.close()
        limit = (await api.call("GET", "/gateway/bot")).body["session_start_limit"]
        assert limit["total"] == 7
        assert limit["remaining"] == 6
        assert 500_000 < limit["reset_after"] <= 600_000


async def test_gateway_returns_the_gateway_url(api: Api) -> None:
    reply = await api.call("GET", "/gateway")
    assert reply.status == 200, reply
    assert reply.body == {"url": api.sim.gateway_url}
    assert api.sim.gateway_url.startswith("ws://127.0.0.1:")


async def test_users_me_is_the_bot_user(api: Api) -> None:
    reply = await api.call("GET", "/users/@me")
    assert reply.status == 200, reply
    assert reply.body["id"] == str(api.bot_id)
    assert reply.body["bot"] is True
    assert isinstance(reply.body["username"], str) and reply.body["username"]


async def test_oauth2_application_is_the_bots_application(api: Api) -> None:
    reply = await api.call("GET", "/oauth2/applications/@me")
    assert reply.status == 200, reply
    assert reply.body["id"] == str(api.bot_id)
    assert reply.body["bot"]["id"] == str(api.bot_id)
    assert reply.body["owner"]["id"] == str(api.bot_id)
    assert reply.body["approximate_guild_count"] == GUILDS


# -- rate limits --------------------------------------------------------------------------------


@pytest.mark.virtual_time
async def test_route_bucket_gives_limit_calls_then_429_with_discords_headers() -> None:
    async with simulator_api(rest_route_limit=3, rest_route_window=1.0) as api:
        channel_id = api.channel_of(api.guild_at(0))
        successes = [await api.post_message(channel_id, f"call {n}") for n in range(3)]
        assert [reply.status for reply in successes] == [200, 200, 200]
        assert [reply.headers["X-RateLimit-Remaining"] for reply in successes] == ["2", "1", "0"]
        assert {reply.headers["X-RateLimit-Limit"] for reply in successes} == {"3"}
        bucket = successes[0].headers["X-RateLimit-Bucket"]
        assert bucket and {reply.headers["X-RateLimit-Bucket"] for reply in successes} == {bucket}

        limited = await api.post_message(channel_id, "one too many")
        called_at = time.time()
        assert limited.status == 429, limited
        assert limited.headers["Content-Type"] == "application/json"
        assert limited.body["global"] is False
        assert 0 < limited.body["retry_after"] <= 1.0
        headers = limited.headers
        assert headers["X-RateLimit-Limit"] == "3"
        assert headers["X-RateLimit-Remaining"] == "0"
        assert headers["X-RateLimit-Bucket"] == bucket
        assert headers["X-RateLimit-Scope"] == "user"
        reset_after = float(headers["X-RateLimit-Reset-After"])
        assert 0 < reset_after <= 1.0
        assert float(headers["X-RateLimit-Reset"]) == pytest.approx(called_at + reset_after, abs=2)
        assert int(headers["Retry-After"]) >= 1
        assert "X-RateLimit-Global" not in headers

        stats = api.sim.stats
        assert (stats.rest_429, stats.rest_global_429, stats.bot_messages) == (1, 0, 3)


@pytest.mark.virtual_time
async def test_route_bucket_is_per_channel_but_reports_one_bucket_id() -> None:
    async with simulator_api(rest_route_limit=3, rest_route_window=5.0) as api:
        first = api.channel_of(api.guild_at(0), 0)
        other = api.channel_of(api.guild_at(0), 1)
        replies = [await api.post_message(first, f"call {n}") for n in range(4)]
        assert [reply.status for reply in replies] == [200, 200, 200, 429]

        elsewhere = await api.post_message(other, "another channel")
        assert elsewhere.status == 200, elsewhere
        assert elsewhere.headers["X-RateLimit-Remaining"] == "2"
        assert elsewhere.headers["X-RateLimit-Bucket"] == replies[0].headers["X-RateLimit-Bucket"]

        # A different route is a different bucket.
        read = await api.call("GET", f"/channels/{first}")
        assert read.status == 200, read
        assert read.headers["X-RateLimit-Bucket"] != replies[0].headers["X-RateLimit-Bucket"]
        assert read.headers["X-RateLimit-Remaining"] == "2"


@pytest.mark.virtual_time
async def test_route_bucket_reopens_after_reset_after() -> None:
    async with simulator_api(rest_route_limit=3, rest_route_window=1.0) as api:
        channel_id = api.channel_of(api.guild_at(0))
        for n in range(3):
            assert (await api.post_message(channel_id, f"call {n}")).status == 200
        limited = await api.post_message(channel_id, "too soon")
        assert limited.status == 429, limited
        reset_after = float(limited.headers["X-RateLimit-Reset-After"])
        assert reset_after == 1.0  # no time passed: the whole window is left

        await advance(reset_after - 0.05)
        still_limited = await api.post_message(channel_id, "still too soon")
        assert still_limited.status == 429, still_limited
        assert float(still_limited.headers["X-RateLimit-Reset-After"]) == pytest.approx(0.05)
        await advance(0.1)
        reopened = await api.post_message(channel_id, "after the window")
        assert reopened.status == 200, reopened
        assert reopened.headers["X-RateLimit-Remaining"] == "2"
        assert api.sim.stats.rest_429 == 2
        assert [m["content"] for m in await api.bot_messages()] == [
            "call 0",
            "call 1",
            "call 2",
            "after the window",
        ]


@pytest.mark.virtual_time
async def test_global_limit_429s_the_request_over_the_per_second_budget() -> None:
    async with simulator_api(rest_global_limit=5, rest_route_limit=10_000) as api:
        guild_id = api.guild_at(0)
        paths = [
            "/users/@me",
            "/gateway",
            "/gateway/bot",
            "/oauth2/applications/@me",
            f"/guilds/{guild_id}",
        ]
        allowed = [await api.call("GET", path) for path in paths]
        assert [reply.status for reply in allowed] == [200] * 5

        limited = await api.call("GET", f"/guilds/{guild_id}/channels")
        assert limited.status == 429, limited
        assert limited.body["global"] is True
        assert 0 < limited.body["retry_after"] <= 1.0
        assert limited.headers["X-RateLimit-Global"] == "true"
        assert limited.headers["X-RateLimit-Scope"] == "global"
        assert int(limited.headers["Retry-After"]) >= 1
        stats = api.sim.stats
        assert (stats.rest_429, stats.rest_global_429) == (1, 1)


@pytest.mark.virtual_time
async def test_interaction_callbacks_are_exempt_from_the_global_limit() -> None:
    async with simulator_api(rest_global_limit=2, rest_route_limit=10_000) as api:
        interaction = (await api.control("POST", "/interactions", {"command": "ping"})).body
        assert (await api.call("GET", "/users/@me")).status == 200
        assert (await api.call("GET", "/gateway")).status == 200
        assert (await api.call("GET", "/gateway/bot")).status == 429

        callback = f"/interactions/{interaction['id']}/{interaction['token']}/callback"
        reply = await api.call("POST", callback, token=None, json={"type": 5})
        assert reply.status == 204, reply
        assert api.sim.stats.rest_global_429 == 1


MESSAGES_ROUTE = "/channels/{channel_id}/messages"


async def force_shared_429(api: Api, retry_after: float, route: str = MESSAGES_ROUTE) -> None:
    body = {"method": "POST", "route": route, "retry_after": retry_after}
    reply = await api.control("POST", "/ratelimits/shared", body)
    assert reply.status == 200, reply
    assert reply.body == {"route": route, "method": "POST", "until_s": retry_after}


@pytest.mark.virtual_time
async def test_forced_shared_429_refuses_the_route_on_every_channel_until_retry_after() -> None:
    async with simulator_api(rest_route_limit=5, rest_global_limit=10_000) as api:
        first = api.channel_of(api.guild_at(0), 0)
        other = api.channel_of(api.guild_at(1), 0)
        before = await api.post_message(first, "before")
        assert before.status == 200, before
        bucket = before.headers["X-RateLimit-Bucket"]

        await force_shared_429(api, 1.5)
        limited = [await api.post_message(first, "refused"), await api.post_message(other, "too")]
        called_at = time.time()
        for reply, remaining in zip(limited, ["4", "5"], strict=True):
            assert reply.status == 429, reply
            assert reply.headers["Content-Type"] == "application/json"
            assert set(reply.body) == {"message", "retry_after", "global", "code"}
            assert reply.body["message"] == "You are being rate limited."
            assert (reply.body["global"], reply.body["code"]) == (False, 0)
            retry_after = reply.body["retry_after"]
            assert 0 < retry_after <= 1.5 and round(retry_after, 3) == retry_after
            headers = reply.headers
            assert headers["X-RateLimit-Scope"] == "shared"
            assert headers["Retry-After"] in {"1", "2"}  # whole seconds: ceil of what is left
            assert headers["X-RateLimit-Bucket"] == bucket
            assert headers["X-RateLimit-Limit"] == "5"
            # The refusal took nothing from the channel's own bucket.
            assert headers["X-RateLimit-Remaining"] == remaining
            reset_after = float(headers["X-RateLimit-Reset-After"])
            assert float(headers["X-RateLimit-Reset"]) == pytest.approx(
                called_at + reset_after, abs=2
            )
            assert "X-RateLimit-Global" not in headers

        # Other routes, on the same channel too, answer as before.
        assert (await api.call("GET", f"/channels/{first}")).status == 200
        edited = await api.call(
            "PATCH", f"/channels/{first}/messages/{before.body['id']}", json={"content": "ok"}
        )
        assert edited.status == 200, edited
        stats = (await api.control("GET", "/stats")).body
        assert (stats["rest_429"], stats["rest_shared_429"], stats["rest_global_429"]) == (2, 2, 0)

        await advance(limited[-1].body["retry_after"] - 0.05)
        still = await api.post_message(other, "still refused")
        assert still.status == 429 and still.headers["X-RateLimit-Scope"] == "shared", still
        await advance(0.1)
        after = [await api.post_message(first, "after"), await api.post_message(other, "after")]
        assert [reply.status for reply in after] == [200, 200], after
        assert [reply.headers["X-RateLimit-Remaining"] for reply in after] == ["3", "4"]
        assert [m["content"] for m in await api.bot_messages()] == ["ok", "after", "after"]
        assert (api.sim.stats.rest_429, api.sim.stats.rest_shared_429) == (3, 3)


@pytest.mark.virtual_time
async def test_forced_shared_429_takes_no_global_slot() -> None:
    async with simulator_api(rest_global_limit=2, rest_route_limit=10_000) as api:
        channel_id = api.channel_of(api.guild_at(0))
        await force_shared_429(api, 5)
        for n in range(3):
            assert (await api.post_message(channel_id, f"refused {n}")).status == 429
        # Both global slots of this second are still free.
        assert (await api.call("GET", "/users/@me")).status == 200
        assert (await api.call("GET", "/gateway")).status == 200
        stats = api.sim.stats
        assert (stats.rest_429, stats.rest_shared_429, stats.rest_global_429) == (3, 3, 0)


async def test_forced_shared_429_on_a_webhook_route_refuses_every_token(api: Api) -> None:
    followup = "/webhooks/{webhook_id}/{token}"
    await force_shared_429(api, 5, followup)
    for _ in range(2):
        interaction = (await api.control("POST", "/interactions", {"command": "ping"})).body
        path = f"/webhooks/{api.bot_id}/{interaction['token']}"
        reply = await api.call("POST", path, token=None, json={"content": "x"})
        assert reply.status == 429, reply
        assert reply.headers["X-RateLimit-Scope"] == "shared"
    assert api.sim.stats.rest_shared_429 == 2


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"method": "post", "route": MESSAGES_ROUTE, "retry_after": 1}, "not an HTTP method"),
        ({"method": "FETCH", "route": MESSAGES_ROUTE, "retry_after": 1}, "not an HTTP method"),
        ({"method": "DELETE", "route": MESSAGES_ROUTE, "retry_after": 1}, "serves no DELETE"),
        ({"method": "POST", "route": "/api/v10" + MESSAGES_ROUTE, "retry_after": 1}, "serves no"),
        ({"method": "POST", "route": "/channels/123/messages", "retry_after": 1}, "serves no"),
        ({"method": "POST", "route": MESSAGES_ROUTE, "retry_after": 0}, "retry_after"),
        ({"method": "POST", "route": MESSAGES_ROUTE, "retry_after": -1}, "retry_after"),
        ({"method": "POST", "route": MESSAGES_ROUTE, "retry_after": 60.5}, "retry_after"),
        ({"method": "POST", "route": MESSAGES_ROUTE, "retry_after": "1"}, "retry_after"),
        ({"method": "POST", "route": MESSAGES_ROUTE}, "retry_after"),
        ({"method": "POST", "route": MESSAGES_ROUTE, "retry_after": 1, "x": 1}, "x"),
        ([], "SharedRateLimit"),
    ],
    ids=[
        "lowercase-method",
        "unknown-method",
        "method-not-served",
        "api-prefix",
        "concrete-path",
        "zero",
        "negative",
        "over-60",
        "string",
        "missing",
        "extra-field",
        "array",
    ],
)
async def test_a_bad_shared_429_request_is_400_with_the_reason(
    api: Api, body: object, reason: str
) -> None:
    reply = await api.control("POST", "/ratelimits/shared", body)
    assert reply.status == 400, reply
    assert reason in reply.body["message"], reply
    channel_id = api.channel_of(api.guild_at(0))
    assert (await api.post_message(channel_id, "not limited")).status == 200
    assert api.sim.stats.rest_shared_429 == 0


# -- creating messages --------------------------------------------------------------------------


async def test_json_message_create_returns_the_message_object(api: Api) -> None:
    guild_id = api.guild_at(1)
    channel_id = api.channel_of(guild_id, 2)
    reply = await api.post_message(channel_id, "hello there")
    assert reply.status == 200, reply
    message = reply.body
    assert message["content"] == "hello there"
    assert message["channel_id"] == str(channel_id)
    assert message["guild_id"] == str(guild_id)
    assert message["author"]["id"] == str(api.bot_id)
    assert message["author"]["bot"] is True
    assert message["attachments"] == [] and message["embeds"] == []
    assert "message_reference" not in message
    assert int(message["id"]) > 0
    assert api.sim.stats.bot_messages == 1


async def test_multipart_message_uploads_an_attachment_that_its_url_serves(api: Api) -> None:
    channel_id = api.channel_of(api.guild_at(0))
    form = aiohttp.FormData()
    form.add_field("payload_json", msgspec.json.encode({"content": "a picture"}).decode())
    form.add_field("files[0]", PNG_BYTES, filename="a.png", content_type="image/png")
    reply = await api.call("POST", f"/channels/{channel_id}/messages", data=form)
    assert reply.status == 200, reply
    assert reply.body["content"] == "a picture"
    [attachment] = reply.body["attachments"]
    assert attachment["filename"] == "a.png"
    assert attachment["size"] == len(PNG_BYTES)
    assert attachment["content_type"] == "image/png"
    assert attachment["url"].startswith(f"{api.sim.cdn_url}/")

    async with api.http.get(attachment["url"]) as download:
        assert download.status == 200
        assert download.content_type == "image/png"
        assert await download.read() == PNG_BYTES


async def test_attachment_alone_is_a_message(api: Api) -> None:
    channel_id = api.channel_of(api.guild_at(0))
    form = aiohttp.FormData()
    form.add_field("payload_json", "{}")
    form.add_field("files[0]", b"just a file", filename="a.txt", content_type="text/plain")
    reply = await api.call("POST", f"/channels/{channel_id}/messages", data=form)
    assert reply.status == 200, reply
    assert reply.body["content"] == ""
    assert [a["filename"] for a in reply.body["attachments"]] == ["a.txt"]


async def test_reply_to_a_user_message_carries_its_message_reference(api: Api) -> None:
    guild_id = api.guild_at(2)
    channel_id = api.channel_of(guild_id)
    user_message = await api.inject_user_message(channel_id, "!ping")

    reply = await api.post_message(
        channel_id, "pong", message_reference={"message_id": str(user_message)}
    )
    assert reply.status == 200, reply
    assert reply.body["message_reference"]["message_id"] == str(user_message)
    assert reply.body["message_reference"]["channel_id"] == str(channel_id)
    assert reply.body["message_reference"]["guild_id"] == str(guild_id)
    [listed] = await api.bot_messages()
    assert listed["message_reference"]["message_id"] == str(user_message)


async def test_reply_to_an_unknown_message_is_400_unless_it_may_be_missing(api: Api) -> None:
    channel_id = api.channel_of(api.guild_at(0))
    missing = {"message_id": str(api.sim.snowflakes.next())}
    reply = await api.post_message(channel_id, "pong", message_reference=missing)
    assert_error(reply, 400, INVALID_FORM_BODY)
    assert "message_reference" in reply.body["errors"]

    lenient = await api.post_message(
        channel_id, "pong", message_reference={**missing, "fail_if_not_exists": False}
    )
    assert lenient.status == 200, lenient
    assert "message_reference" not in lenient.body
    assert api.sim.stats.bot_messages == 1


async def test_reply_to_a_user_message_in_another_channel_is_400(api: Api) -> None:
    guild_id = api.guild_at(0)
    elsewhere = await api.inject_user_message(api.channel_of(guild_id, 1), "hi")
    reply = await api.post_message(
        api.channel_of(guild_id, 0), "pong", message_reference={"message_id": str(elsewhere)}
    )
    assert_error(reply, 400, INVALID_FORM_BODY)


async def test_reply_with_a_non_snowflake_message_id_is_400_not_500(api: Api) -> None:
    channel_id = api.channel_of(api.guild_at(0))
    reply = await api.post_message(channel_id, "pong", message_reference={"message_id": "abc"})
    assert_error(reply, 400, INVALID_FORM_BODY)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, EMPTY_MESSAGE),
        ({"content": ""}, EMPTY_MESSAGE),
        ({"content": None, "embeds": []}, EMPTY_MESSAGE),
        ({"content": "x" * 2001}, INVALID_FORM_BODY),
        ({"content": 5}, INVALID_FORM_BODY),
        ({"embeds": [{"title": str(n)} for n in range(11)]}, INVALID_FORM_BODY),
        ([{"content": "a list"}], INVALID_FORM_BODY),
    ],
    ids=[
        "empty",
        "empty-content",
        "null-content",
        "2001-chars",
        "int-content",
        "11-embeds",
        "array",
    ],
)
async def test_invalid_message_bodies_are_400_with_discords_code(
    api: Api, body: object, code: int
) -> None:
    channel_id = api.channel_of(api.guild_at(0))
    reply = await api.call("POST", f"/channels/{channel_id}/messages", json=body)
    assert_error(reply, 400, code)
    assert api.sim.stats.bot_messages == 0


async def test_content_of_exactly_2000_characters_is_accepted(api: Api) -> None:
    reply = await api.post_message(api.channel_of(api.guild_at(0)), "x" * 2000)
    assert reply.status == 200, reply
    assert len(reply.body["content"]) == 2000


@pytest.mark.parametrize("raw", [b"{not json", b"", b'{"content": "unterminated'])
async def test_invalid_json_is_400_50109(api: Api, raw: bytes) -> None:
    channel_id = api.channel_of(api.guild_at(0))
    reply = await api.call(
        "POST",
        f"/channels/{channel_id}/messages",
        data=raw,
        headers={"Content-Type": "application/json"},
    )
    assert_error(reply, 400, INVALID_JSON)


async def test_invalid_payload_json_in_multipart_is_400_50109(api: Api) -> None:
    form = aiohttp.FormData()
    form.add_field("payload_json", "{nope")
    form.add_field("files[0]", b"data", filename="a.txt", content_type="text/plain")
    reply = await api.call(
        "POST", f"/channels/{api.channel_of(api.guild_at(0))}/messages", data=form
    )
    assert_error(reply, 400, INVALID_JSON)


async def test_message_to_an_unknown_channel_is_404_10003(api: Api) -> None:
    guild_id = api.guild_at(0)
    no_such_channel = guild_id | 0x1FF  # a channel slot the guild does not have
    no_such_guild = (api.guild_at(GUILDS - 1) + (10 << 22)) | 0x100
    for channel_id in (no_such_channel, no_such_guild, api.bot_id):
        reply = await api.post_message(channel_id, "hello?")
        assert_error(reply, 404, UNKNOWN_CHANNEL)
    assert api.sim.stats.bot_messages == 0


@pytest.mark.parametrize("bad_id", ["abc", "12a", "-5", "1" * 21])
async def test_non_snowflake_ids_in_paths_are_400(api: Api, bad_id: str) -> None:
    for path in (
        f"/channels/{bad_id}/messages",
        f"/guilds/{bad_id}",
        f"/users/{bad_id}",
        f"/channels/{api.channel_of(api.guild_at(0))}/messages/{bad_id}",
    ):
        method = "POST" if path.endswith("/messages") else "GET"
        reply = await api.call(method, path, json={"content": "x"})
        assert_error(reply, 400, INVALID_FORM_BODY)


async def test_non_ascii_digits_in_a_snowflake_are_400_not_500(api: Api) -> None:
    # str.isdigit() is true for superscripts such as "²", which int() then rejects.
    for bad_id in ("²", "1²3"):
        reply = await api.call("GET", f"/users/{bad_id}")
        assert_error(reply, 400, INVALID_FORM_BODY)


async def test_enforced_nonce_makes_a_retried_create_return_the_first_message(api: Api) -> None:
    channel_id = api.channel_of(api.guild_at(0))
    first = await api.post_message(channel_id, "once", nonce="retry-1", enforce_nonce=True)
    assert first.status == 200, first
    assert first.body["nonce"] == "retry-1"
    retried = await api.post_message(channel_id, "once", nonce="retry-1", enforce_nonce=True)
    assert retried.status == 200, retried
    assert retried.body["id"] == first.body["id"]
    assert len(await api.bot_messages()) == 1

    # Not enforced, or in another channel, the same nonce makes a new message.
    unenforced = await api.post_message(channel_id, "again", nonce="retry-1")
    elsewhere = await api.post_message(
        api.channel_of(api.guild_at(0), 1), "there", nonce="retry-1", enforce_nonce=True
    )
    ids = {first.body["id"], unenforced.body["id"], elsewhere.body["id"]}
    assert len(ids) == 3
    assert api.sim.stats.bot_messages == 3


@pytest.mark.parametrize("nonce", ["x" * 26, 1.5, ["list"], {"a": 1}])
async def test_invalid_nonce_is_400(api: Api, nonce: object) -> None:
    reply = await api.post_message(api.channel_of(api.guild_at(0)), "hi", nonce=nonce)
    assert_error(reply, 400, INVALID_FORM_BODY)
    assert "nonce" in reply.body["errors"]


async def test_edit_message_changes_content_and_marks_it_edited(api: Api) -> None:
    channel_id = api.channel_of(api.guild_at(0))
    created = (await api.post_message(channel_id, "first")).body
    reply = await api.call(
        "PATCH", f"/channels/{channel_id}/messages/{created['id']}", json={"content": "second"}
    )
    assert reply.status == 200, reply
    assert reply.body["id"] == created["id"]
    assert reply.body["content"] == "second"
    assert reply.body["edited_timestamp"] is not None
    fetched = await api.call("GET", f"/channels/{channel_id}/messages/{created['id']}")
    assert fetched.body["content"] == "second"


async def test_control_listing_shows_exactly_the_bots_messages_and_filters(api: Api) -> None:
    guild_id = api.guild_at(0)
    here, there = api.channel_of(guild_id, 0), api.channel_of(guild_id, 1)
    await api.inject_user_message(here, "a user's message")
    first = (await api.post_message(here, "one")).body
    second = (await api.post_message(there, "two")).body
    third = (await api.post_message(here, "three")).body

    everything = await api.bot_messages()
    assert [m["content"] for m in everything] == ["one", "two", "three"]
    assert [m["id"] for m in everything] == [int(m["id"]) for m in (first, second, third)]
    assert {m["guild_id"] for m in everything} == {guild_id}

    assert [m["content"] for m in await api.bot_messages(f"?channel_id={here}")] == [
        "one",
        "three",
    ]
    assert [m["content"] for m in await api.bot_messages(f"?after={first['id']}")] == [
        "two",
        "three",
    ]
    assert [
        m["content"] for m in await api.bot_messages(f"?channel_id={here}&after={first['id']}")
    ] == ["three"]
    assert await api.bot_messages(f"?after={third['id']}") == []
    assert api.sim.stats.user_messages == 1


@pytest.mark.virtual_time  # the wait for nothing on shard 0 ends when nothing is in flight
async def test_bot_message_is_dispatched_as_message_create_to_its_guilds_shard_only() -> None:
    async with simulator_api(max_concurrency=2, **UNLIMITED) as api:
        shards = [await RawGatewayClient.connect(api.sim.gateway_url) for _ in range(2)]
        try:
            for shard_id, client in enumerate(shards):
                ready = await client.identify(api.sim.token, shard=(shard_id, 2))
                for _ in ready["guilds"]:
                    await client.receive_until("GUILD_CREATE")
            guild_id = next(g for g in api.sim.world.guild_ids if (g >> 22) % 2 == 1)
            channel_id = api.channel_of(guild_id)

            posted = await api.post_message(channel_id, "to shard one")
            assert posted.status == 200, posted

            dispatch = (await shards[1].receive_until("MESSAGE_CREATE"))[-1]["d"]
            assert dispatch["id"] == posted.body["id"]
            assert dispatch["content"] == "to shard one"
            assert dispatch["channel_id"] == str(channel_id)
            assert dispatch["guild_id"] == str(guild_id)
            assert dispatch["author"]["id"] == str(api.bot_id)
            assert dispatch["author"]["bot"] is True
            with pytest.raises(TimeoutError):
                await shards[0].receive(timeout=0.3)
        finally:
            for client in shards:
                await client.close()


# -- reads ----------------------------------------------------------------------------------------


async def test_guild_read_matches_the_world(api: Api) -> None:
    guild = api.sim.world.guild(api.guild_at(1))
    reply = await api.call("GET", f"/guilds/{guild.id}")
    assert reply.status == 200, reply
    assert reply.body["id"] == str(guild.id)
    assert reply.body["name"] == guild.name
    assert reply.body["owner_id"] == str(guild.owner_id)
    assert [role["id"] for role in reply.body["roles"]] == [str(r) for r in guild.role_ids]
    assert [emoji["id"] for emoji in reply.body["emojis"]] == [str(e.id) for e in guild.emojis]


async def test_guild_channels_roles_and_emojis_match_the_world(api: Api) -> None:
    guild = api.sim.world.guild(api.guild_at(0))
    channels = await api.call("GET", f"/guilds/{guild.id}/channels")
    assert channels.status == 200, channels
    assert [c["id"] for c in channels.body] == [str(c) for c in guild.channel_ids]
    assert {c["guild_id"] for c in channels.body} == {str(guild.id)}

    roles = await api.call("GET", f"/guilds/{guild.id}/roles")
    assert roles.status == 200, roles
    assert [r["id"] for r in roles.body] == [str(r) for r in guild.role_ids]
    assert roles.body[0]["name"] == "@everyone"

    emojis = await api.call("GET", f"/guilds/{guild.id}/emojis")
    assert emojis.status == 200, emojis
    assert [(e["id"], e["name"]) for e in emojis.body] == [
        (str(e.id), e.name) for e in guild.emojis
    ]
    emoji = guild.emojis[1]
    single = await api.call("GET", f"/guilds/{guild.id}/emojis/{emoji.id}")
    assert single.status == 200, single
    assert single.body["id"] == str(emoji.id)
    assert single.body["animated"] == emoji.animated


async def test_members_list_pages_with_limit_and_after(api: Api) -> None:
    guild = api.sim.world.guild(api.guild_at(0))
    members = sorted(guild.member_ids)
    path = f"/guilds/{guild.id}/members"

    default = await api.call("GET", path)
    assert default.status == 200, default
    assert [m["user"]["id"] for m in default.body] == [str(members[0])]  # limit defaults to 1

    everyone = await api.call("GET", path, params={"limit": "1000"})
    assert [m["user"]["id"] for m in everyone.body] == [str(m) for m in members]

    page = await api.call("GET", path, params={"limit": "5", "after": str(members[3])})
    assert [m["user"]["id"] for m in page.body] == [str(m) for m in members[4:9]]

    past_the_end = await api.call("GET", path, params={"limit": "10", "after": str(members[-1])})
    assert past_the_end.body == []


@pytest.mark.parametrize("limit", ["0", "1001", "abc", "-1", ""])
async def test_bad_members_limit_is_400(api: Api, limit: str) -> None:
    reply = await api.call("GET", f"/guilds/{api.guild_at(0)}/members", params={"limit": limit})
    assert_error(reply, 400, INVALID_FORM_BODY)
    assert "limit" in reply.body["errors"]


async def test_non_numeric_members_after_is_400_not_500(api: Api) -> None:
    reply = await api.call(
        "GET", f"/guilds/{api.guild_at(0)}/members", params={"limit": "10", "after": "abc"}
    )
    assert_error(reply, 400, INVALID_FORM_BODY)


async def test_non_ascii_digit_limit_is_400_not_500(api: Api) -> None:
    reply = await api.call("GET", f"/guilds/{api.guild_at(0)}/members", params={"limit": "²"})
    assert_error(reply, 400, INVALID_FORM_BODY)


async def test_single_member_channel_and_user_reads(api: Api) -> None:
    guild = api.sim.world.guild(api.guild_at(0))
    member_id = guild.member_ids[3]

    member = await api.call("GET", f"/guilds/{guild.id}/members/{member_id}")
    assert member.status == 200, member
    assert member.body["user"]["id"] == str(member_id)
    assert member.body["user"]["bot"] is False
    assert all(int(role) in guild.role_ids for role in member.body["roles"])

    channel = await api.call("GET", f"/channels/{guild.channel_ids[1]}")
    assert channel.status == 200, channel
    assert channel.body["id"] == str(guild.channel_ids[1])
    assert channel.body["guild_id"] == str(guild.id)

    user = await api.call("GET", f"/users/{member_id}")
    assert user.status == 200, user
    assert user.body["id"] == str(member_id)
    assert user.body["username"] == member.body["user"]["username"]

    bot = await api.call("GET", f"/users/{api.bot_id}")
    assert bot.body["bot"] is True


async def test_message_read_by_id(api: Api) -> None:
    channel_id = api.channel_of(api.guild_at(0))
    created = (await api.post_message(channel_id, "keep me")).body
    reply = await api.call("GET", f"/channels/{channel_id}/messages/{created['id']}")
    assert reply.status == 200, reply
    assert reply.body == created

    user_message = await api.inject_user_message(channel_id, "a user said this")
    reply = await api.call("GET", f"/channels/{channel_id}/messages/{user_message}")
    assert reply.status == 200, reply
    assert reply.body["content"] == "a user said this"
    assert reply.body["author"]["id"] != str(api.bot_id)


async def test_unknown_objects_are_404_with_their_codes() -> None:
    # Few members per guild, so that some users of the world are not in a given guild.
    async with simulator_api(members_per_guild=5, **UNLIMITED) as api:
        world = api.sim.world
        guild = world.guild(api.guild_at(0))
        channel_id, other_channel = guild.channel_ids[:2]
        not_a_member = next(
            user_id(index)
            for index in range(1, world.user_count)
            if user_id(index) not in guild.member_ids
        )
        message_id = int((await api.post_message(channel_id, "here")).body["id"])
        missing_guild = api.guild_at(GUILDS - 1) + (100 << 22)
        cases = [
            (f"/guilds/{missing_guild}", UNKNOWN_GUILD),
            (f"/guilds/{missing_guild}/channels", UNKNOWN_GUILD),
            (f"/guilds/{channel_id}", UNKNOWN_GUILD),  # a channel id is no guild
            (f"/guilds/{guild.id}/members/{not_a_member}", UNKNOWN_MEMBER),
            (f"/users/{user_id(world.user_count + 5)}", UNKNOWN_USER),
            (f"/users/{guild.id}", UNKNOWN_USER),
            (f"/channels/{channel_id}/messages/{message_id + 1}", UNKNOWN_MESSAGE),
            (f"/channels/{other_channel}/messages/{message_id}", UNKNOWN_MESSAGE),
            (f"/guilds/{guild.id}/emojis/{guild.id | (EMOJI_BASE + 0xFF)}", UNKNOWN_EMOJI),
            (f"/channels/{guild.id | 0x1FF}", UNKNOWN_CHANNEL),
        ]
        for path, code in cases:
            reply = await api.call("GET", path)
            assert (path, reply.status, reply.body["code"]) == (path, 404, code)
            assert_error(reply, 404, code)


async def test_a_world_whose_guilds_hold_only_the_bot_serves_them() -> None:
    async with simulator_api(guilds=2, users=1, members_per_guild=0, **UNLIMITED) as api:
        guild_id = api.guild_at(0)
        guild = await api.call("GET", f"/guilds/{guild_id}")
        assert guild.status == 200, guild
        assert guild.body["owner_id"] == str(api.bot_id)
        members = await api.call("GET", f"/guilds/{guild_id}/members", params={"limit": "10"})
        assert [m["user"]["id"] for m in members.body] == [str(api.bot_id)]


async def test_own_guilds_list_pages_with_limit_and_after(api: Api) -> None:
    guild_ids = api.sim.world.guild_ids
    reply = await api.call("GET", "/users/@me/guilds")
    assert reply.status == 200, reply
    assert [g["id"] for g in reply.body] == [str(g) for g in guild_ids]
    page = await api.call(
        "GET", "/users/@me/guilds", params={"limit": "2", "after": str(guild_ids[0])}
    )
    assert [g["id"] for g in page.body] == [str(g) for g in guild_ids[1:3]]
    assert_error(
        await api.call("GET", "/users/@me/guilds", params={"limit": "201"}), 400, INVALID_FORM_BODY
    )


# -- interactions -------------------------------------------------------------------------------


async def inject_interaction(api: Api, command: str = "ping") -> dict[str, Any]:
    reply = await api.control("POST", "/interactions", {"command": command})
    assert reply.status == 200, reply
    assert isinstance(reply.body["id"], int) and reply.body["token"]
    interaction: dict[str, Any] = reply.body
    return interaction


def callback_path(interaction: dict[str, Any], token: str | None = None) -> str:
    return f"/interactions/{interaction['id']}/{token or interaction['token']}/callback"


async def test_interaction_callback_without_authorization_posts_the_response(api: Api) -> None:
    interaction = await inject_interaction(api)
    reply = await api.call(
        "POST",
        callback_path(interaction),
        token=None,
        json={"type": 4, "data": {"content": "pong"}},
    )
    assert reply.status == 204, reply
    assert api.sim.stats.rest_401 == 0

    [answer] = await api.bot_messages(f"?channel_id={interaction['channel_id']}")
    assert answer["content"] == "pong"
    assert answer["interaction_id"] == str(interaction["id"])
    assert answer["guild_id"] == interaction["guild_id"]
    assert (api.sim.stats.interactions, api.sim.stats.interaction_responses) == (1, 1)


async def test_second_interaction_callback_is_400_already_acknowledged(api: Api) -> None:
    interaction = await inject_interaction(api)
    body = {"type": 4, "data": {"content": "pong"}}
    assert (await api.call("POST", callback_path(interaction), token=None, json=body)).status == 204
    again = await api.call("POST", callback_path(interaction), token=None, json=body)
    assert_error(again, 400, ALREADY_ACKNOWLEDGED)
    assert len(await api.bot_messages()) == 1
    assert api.sim.stats.interaction_responses == 1


async def test_interaction_callback_with_bad_token_or_id_is_404_10062(api: Api) -> None:
    interaction = await inject_interaction(api)
    body = {"type": 4, "data": {"content": "pong"}}
    bad_token = await api.call(
        "POST", callback_path(interaction, token="not-a-token"), token=None, json=body
    )
    assert_error(bad_token, 404, UNKNOWN_INTERACTION)
    other_id = {**interaction, "id": interaction["id"] + 1}
    wrong_id = await api.call("POST", callback_path(other_id), token=None, json=body)
    assert_error(wrong_id, 404, UNKNOWN_INTERACTION)
    # Neither counted as the response: the real one still goes through.
    assert (await api.call("POST", callback_path(interaction), token=None, json=body)).status == 204


async def test_interaction_callback_of_unknown_type_is_400_and_leaves_it_open(api: Api) -> None:
    interaction = await inject_interaction(api)
    bad = await api.call("POST", callback_path(interaction), token=None, json={"type": 99})
    assert_error(bad, 400, INVALID_FORM_BODY)
    good = await api.call("POST", callback_path(interaction), token=None, json={"type": 5})
    assert good.status == 204, good


async def test_failed_interaction_callback_does_not_acknowledge_the_interaction(api: Api) -> None:
    interaction = await inject_interaction(api)
    too_long = {"type": 4, "data": {"content": "x" * 2001}}
    rejected = await api.call("POST", callback_path(interaction), token=None, json=too_long)
    assert_error(rejected, 400, INVALID_FORM_BODY)

    retry = {"type": 4, "data": {"content": "pong"}}
    accepted = await api.call("POST", callback_path(interaction), token=None, json=retry)
    assert accepted.status == 204, accepted
    assert [m["content"] for m in await api.bot_messages()] == ["pong"]
    assert api.sim.stats.interaction_responses == 1


async def test_deferred_response_then_edit_original_creates_the_answer(api: Api) -> None:
    interaction = await inject_interaction(api)
    deferred = await api.call("POST", callback_path(interaction), token=None, json={"type": 5})
    assert deferred.status == 204, deferred
    assert await api.bot_messages() == []

    original = f"/webhooks/{api.bot_id}/{interaction['token']}/messages/@original"
    assert_error(await api.call("GET", original, token=None), 404, UNKNOWN_MESSAGE)

    answer = await api.call("PATCH", original, token=None, json={"content": "later pong"})
    assert answer.status == 200, answer
    assert answer.body["content"] == "later pong"
    assert answer.body["channel_id"] == str(interaction["channel_id"])
    assert answer.body["interaction_metadata"]["id"] == str(interaction["id"])

    fetched = await api.call("GET", original, token=None)
    assert fetched.status == 200, fetched
    assert fetched.body["id"] == answer.body["id"]

    edited = await api.call("PATCH", original, token=None, json={"content": "edited pong"})
    assert edited.body["id"] == answer.body["id"]
    assert [m["content"] for m in await api.bot_messages()] == ["edited pong"]


async def test_followup_creates_another_message_for_the_interaction(api: Api) -> None:
    interaction = await inject_interaction(api)
    body = {"type": 4, "data": {"content": "first"}}
    assert (await api.call("POST", callback_path(interaction), token=None, json=body)).status == 204

    followup = await api.call(
        "POST",
        f"/webhooks/{api.bot_id}/{interaction['token']}",
        token=None,
        json={"content": "more"},
    )
    assert followup.status == 200, followup
    assert followup.body["content"] == "more"
    listing = await api.bot_messages()
    assert [(m["content"], m["interaction_id"]) for m in listing] == [
        ("first", str(interaction["id"])),
        ("more", str(interaction["id"])),
    ]

    wrong_webhook = await api.call(
        "POST", f"/webhooks/{api.bot_id + 1}/{interaction['token']}", token=None, json=body
    )
    assert_error(wrong_webhook, 404, UNKNOWN_WEBHOOK)
    unknown_token = await api.call(
        "POST", f"/webhooks/{api.bot_id}/nope", token=None, json={"content": "x"}
    )
    assert_error(unknown_token, 404, UNKNOWN_INTERACTION)


# -- application commands -----------------------------------------------------------------------


COMMANDS: list[dict[str, Any]] = [
    {"name": "ping", "description": "Ping the bot", "type": 1},
    {
        "name": "echo",
        "description": "Say it back",
        "options": [{"type": 3, "name": "text", "description": "what", "required": True}],
    },
]


async def test_put_global_commands_returns_them_with_ids_and_get_reads_them_back(
    api: Api,
) -> None:
    path = f"/applications/{api.bot_id}/commands"
    assert (await api.call("GET", path)).body == []

    put = await api.call("PUT", path, json=COMMANDS)
    assert put.status == 200, put
    assert [c["name"] for c in put.body] == ["ping", "echo"]
    assert all(int(c["id"]) > 0 for c in put.body)
    assert len({c["id"] for c in put.body}) == 2
    assert {c["application_id"] for c in put.body} == {str(api.bot_id)}
    assert put.body[1]["options"] == COMMANDS[1]["options"]
    assert all("guild_id" not in c for c in put.body)

    got = await api.call("GET", path)
    assert got.status == 200, got
    assert got.body == put.body


async def test_guild_commands_are_separate_from_global_commands(api: Api) -> None:
    guild_id = api.guild_at(0)
    global_path = f"/applications/{api.bot_id}/commands"
    guild_path = f"/applications/{api.bot_id}/guilds/{guild_id}/commands"
    assert (await api.call("PUT", global_path, json=COMMANDS)).status == 200

    assert (await api.call("GET", guild_path)).body == []
    put = await api.call("PUT", guild_path, json=[{"name": "local", "description": "here"}])
    assert put.status == 200, put
    assert [(c["name"], c["guild_id"]) for c in put.body] == [("local", str(guild_id))]

    assert (await api.call("GET", guild_path)).body == put.body
    other_guild = f"/applications/{api.bot_id}/guilds/{api.guild_at(1)}/commands"
    assert (await api.call("GET", other_guild)).body == []
    assert [c["name"] for c in (await api.call("GET", global_path)).body] == ["ping", "echo"]

    # PUT replaces the whole set.
    assert (await api.call("PUT", global_path, json=[])).body == []
    assert (await api.call("GET", global_path)).body == []
    assert len((await api.call("GET", guild_path)).body) == 1


async def test_commands_of_another_application_are_404_10002(api: Api) -> None:
    other = api.bot_id + (1 << 22)
    assert_error(await api.call("GET", f"/applications/{other}/commands"), 404, UNKNOWN_APPLICATION)
    put = await api.call("PUT", f"/applications/{other}/commands", json=COMMANDS)
    assert_error(put, 404, UNKNOWN_APPLICATION)
    guild_scoped = f"/applications/{other}/guilds/{api.guild_at(0)}/commands"
    assert_error(await api.call("GET", guild_scoped), 404, UNKNOWN_APPLICATION)


async def test_commands_in_an_unknown_guild_are_404_10004(api: Api) -> None:
    missing = api.guild_at(GUILDS - 1) + (100 << 22)
    reply = await api.call("GET", f"/applications/{api.bot_id}/guilds/{missing}/commands")
    assert_error(reply, 404, UNKNOWN_GUILD)


async def test_malformed_command_lists_are_400(api: Api) -> None:
    path = f"/applications/{api.bot_id}/commands"
    assert_error(await api.call("PUT", path, json={"name": "ping"}), 400, INVALID_FORM_BODY)
    assert_error(
        await api.call("PUT", path, json=[{"description": "no name"}]), 400, INVALID_FORM_BODY
    )
    assert (await api.call("GET", path)).body == []


# -- routing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"), [("GET", "/no/such/route", 404), ("DELETE", "/gateway/bot", 405)]
)
async def test_unknown_route_or_method_is_json(
    api: Api, method: str, path: str, status: int
) -> None:
    reply = await api.call(method, path)
    assert reply.status == status, reply
    assert reply.headers["Content-Type"] == "application/json"
    assert reply.body["code"] == 0
    assert str(status) in reply.body["message"]


# -- hikari's REST client -------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def hikari_rest(sim: Simulator) -> AsyncIterator[hikari.api.RESTClient]:
    rest_app = hikari.RESTApp(url=sim.rest_url)
    await rest_app.start()
    try:
        async with rest_app.acquire(sim.token, token_type=hikari.TokenType.BOT) as rest:
            yield rest
    finally:
        await rest_app.close()


async def test_hikari_rest_client_parses_the_simulators_responses(api: Api) -> None:
    world = api.sim.world
    guild = world.guild(api.guild_at(1))
    async with hikari_rest(api.sim) as rest:
        me = await rest.fetch_my_user()
        assert me.id == world.bot_id
        assert me.is_bot

        fetched_guild = await rest.fetch_guild(guild.id)
        assert fetched_guild.id == guild.id
        assert fetched_guild.name == guild.name
        assert fetched_guild.owner_id == guild.owner_id
        assert set(fetched_guild.roles) == set(guild.role_ids)
        assert set(fetched_guild.emojis) == {emoji.id for emoji in guild.emojis}

        channels = await rest.fetch_guild_channels(guild.id)
        assert [channel.id for channel in channels] == guild.channel_ids
        assert all(isinstance(channel, hikari.GuildTextChannel) for channel in channels)

        member = await rest.fetch_member(guild.id, guild.member_ids[2])
        assert member.id == guild.member_ids[2]
        assert member.guild_id == guild.id
        assert not member.is_bot

        message = await rest.create_message(
            guild.channel_ids[0], "hi", attachment=hikari.Bytes(b"file body", "x.txt")
        )
        assert message.content == "hi"
        assert message.author.id == world.bot_id
        assert message.channel_id == guild.channel_ids[0]
        [attachment] = message.attachments
        assert (attachment.filename, attachment.size) == ("x.txt", len(b"file body"))
        assert await attachment.read() == b"file body"

        application = await rest.fetch_application()
        assert application.id == world.bot_id

        commands = await rest.set_application_commands(
            application.id,
            [
                rest.slash_command_builder("ping", "Ping the bot"),
                rest.slash_command_builder("echo", "Say it back"),
            ],
        )
        assert [command.name for command in commands] == ["ping", "echo"]
        assert all(command.application_id == world.bot_id for command in commands)
        fetched = await rest.fetch_application_commands(application.id)
        assert [command.id for command in fetched] == [command.id for command in commands]

    [listed] = await api.bot_messages()
    assert listed["content"] == "hi"
    assert [a["filename"] for a in listed["attachments"]] == ["x.txt"]


async def test_hikari_rest_client_paces_itself_by_the_rate_limit_headers() -> None:
    async with simulator_api(rest_route_limit=2, rest_route_window=0.5) as api:
        channel_id = api.channel_of(api.guild_at(0))
        async with hikari_rest(api.sim) as rest:
            async with asyncio.timeout(30):
                for n in range(5):
                    message = await rest.create_message(channel_id, f"paced {n}")
                    assert message.content == f"paced {n}"
        assert [m["content"] for m in await api.bot_messages()] == [f"paced {n}" for n in range(5)]
        # hikari waits out each spent bucket from the headers instead of running into it.
        assert api.sim.stats.rest_429 <= 1
