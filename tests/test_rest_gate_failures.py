"""The REST gate's forwarding on its failure paths: whatever way a request ends, its bucket's turn
is given back, so one upstream timeout cannot hold a route until the gate restarts; and only
this sharder's workers get through, below the API base. The upstream timeouts are met on
virtual time: the slow upstream and the gate's timeout wait on one clock that jumps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yarl
from aiohttp import web

from gate.rest_gate import RestGate
from gate.routes import redacted
from gate.spec import RestGateSpec

ROUTE = "/channels/1234/messages"
SECRET = "per-run-secret"


class Upstream:
    """An API whose first message never gets an answer in time; the later ones get one at once.
    (Slow on the test's loop clock: virtual seconds, in the tests that time out.)"""

    def __init__(self) -> None:
        self.calls = 0

    async def messages(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.calls == 1:
            await asyncio.sleep(3)  # past the gate's upstream timeout below
        return web.json_response({"id": str(self.calls)})

    async def webhook(self, request: web.Request) -> web.Response:
        await asyncio.sleep(3)  # never in time
        return web.json_response({})


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def gate_url() -> AsyncIterator[tuple[str, Upstream]]:
    upstream = Upstream()
    api = web.Application()
    api.router.add_post(f"/api/v10{ROUTE}", upstream.messages)
    api.router.add_post("/api/v10/webhooks/{id}/{token}", upstream.webhook)
    api_runner, api_url = await serve(api)
    spec = RestGateSpec(
        api_url=f"{api_url}/api/v10",
        secret=SECRET,
        workers=2,
        global_limit=50,
        max_wait=2.0,
        invalid_limit=10_000,
        slowdown_at=0.5,
        refuse_at=0.95,
    )
    # The gate process's session, here with an upstream timeout short enough to hit; the gate's
    # limits on the loop's clock, virtual in the tests of timeouts.
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3))
    gate = RestGate(spec, session, clock=asyncio.get_running_loop().time)
    gate_runner, url = await serve(gate.application())
    try:
        yield f"{url}/{SECRET}/w/0/api/v10", upstream
    finally:
        await gate.session.close()
        await gate_runner.cleanup()
        await api_runner.cleanup()


@pytest.mark.virtual_time
async def test_an_upstream_timeout_answers_502_and_gives_the_bucket_back(
    gate_url: tuple[str, Upstream],
) -> None:
    url, upstream = gate_url
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
        async with client.post(f"{url}{ROUTE}", json={"content": "lost"}) as first:
            assert first.status == 502
            assert "did not answer" in (await first.json())["message"]
        async with client.post(f"{url}{ROUTE}", json={"content": "next"}) as second:
            assert second.status == 200, await second.text()  # not 408: the turn came back
    assert upstream.calls == 2


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("/webhooks/123/s3cr3t/messages/9", "/webhooks/123/{token}/messages/9"),
        ("/interactions/456/aW50ZXJhY3Rpb24/callback", "/interactions/456/{token}/callback"),
        ("/channels/1234/messages", "/channels/1234/messages"),
        ("/webhooks/123", "/webhooks/123"),
    ],
)
def test_tokens_in_paths_are_redacted_for_the_logs(path: str, shown: str) -> None:
    assert redacted(path) == shown


@pytest.mark.virtual_time
async def test_a_timed_out_webhook_call_logs_no_token(
    gate_url: tuple[str, Upstream], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = gate_url
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client,
        client.post(f"{url}/webhooks/77/s3cr3t-t0ken", json={}) as answer,
    ):
        assert answer.status == 502
    assert "POST /webhooks/77/{token}: the API did not answer" in caplog.text
    assert "s3cr3t-t0ken" not in caplog.text


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/w/0/api/v10{ROUTE}", 403),  # no secret: the old way in
        (f"/guessed/w/0/api/v10{ROUTE}", 403),
        (f"/{SECRET}/w/2/api/v10{ROUTE}", 403),  # no worker 2 here
        (f"/{SECRET}/w/99999999999/api/v10{ROUTE}", 403),
        (f"/{SECRET}/w/0/api/v10/../../admin", 400),
        (f"/{SECRET}/w/0/api/v10/%2e%2e/%2E%2E/admin", 400),
        (f"/{SECRET}/w/0/api/v10/channels/./1234/messages", 400),
    ],
)
async def test_strangers_and_dot_segments_are_refused_at_once_and_count_for_nothing(
    gate_url: tuple[str, Upstream], path: str, status: int
) -> None:
    url, upstream = gate_url
    base = url.split(f"/{SECRET}/")[0]
    sent = yarl.URL(f"{base}{path}", encoded=True)  # as written: no client-side clean-up
    async with aiohttp.ClientSession() as client:
        for _ in range(20):
            async with client.post(sent, json={}) as answer:
                assert answer.status == status
    assert upstream.calls == 0  # none of it reached the API
