"""``/metrics`` of a running ``--simulate`` sharder, read as Prometheus reads it: every metric the
docs list is there with sane values, and the counters move with traffic."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from simulator.child import call_control
from tests.sharder_run import RunningSharder, running_sharder

SHARDS = 4
WORKERS = 2
GUILDS = 16
MESSAGES = "POST /channels/{channel_id}/messages"
REPORT_TIMEOUT = 5.0
DOCS = Path(__file__).parent.parent / "docs" / "metrics.md"


def documented_metrics() -> set[str]:
    """The names in the docs' table of metrics: "| `sharder_shard_up` | gauge | ..."."""
    names = set(re.findall(r"^\| `((?:sharder|process)_\w+)` \|", DOCS.read_text(), re.M))
    assert len(names) > 30, names
    return names


Scrape = dict[str, list[Sample]]


async def scrape(url: str) -> tuple[Scrape, set[str]]:
    """The families by name, and the names as exposed (counters with ``_total``)."""
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    families = list(text_string_to_metric_families(text))
    exposed = {f"{f.name}_total" if f.type == "counter" else f.name for f in families}
    return {family.name: family.samples for family in families}, exposed


async def scrape_when(url: str, check: Callable[[Scrape], bool]) -> tuple[Scrape, set[str]]:
    """The first scrape for which ``check`` holds: children report with their next heartbeat."""
    deadline = time.monotonic() + REPORT_TIMEOUT
    while True:
        scraped, exposed = await scrape(url)
        if check(scraped) or time.monotonic() > deadline:
            return scraped, exposed
        await asyncio.sleep(0.1)


def value(scraped: Scrape, family: str, sample: str | None = None, **labels: str) -> float:
    """The sum of a family's samples named ``sample`` whose labels include ``labels``."""
    name = sample or family
    return sum(
        s.value
        for s in scraped[family]
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def messages_sent(scraped: Scrape) -> float:
    """Through the REST gate: the last figures to arrive (with the gate's next heartbeat)."""
    return value(scraped, "sharder_rest_requests", "sharder_rest_requests_total", route=MESSAGES)


async def traffic(sharder: RunningSharder) -> None:
    """One of each: a message answered (REST), a request and a broadcast between workers, a
    compute task and a state write."""
    sim = await sharder.simulator()
    guild_ids = (await call_control(sim.control_url, "GET", "/world"))["guild_ids"]
    home = next(g for g in guild_ids if (g >> 22) % SHARDS == 0)
    far = next(g for g in guild_ids if (g >> 22) % SHARDS == SHARDS - 1)
    assert (await sharder.ask(f"!call {far} echo hi", home)).startswith("ok ")
    assert '"ok": true' in await sharder.ask("!all echo x", home)
    assert (await sharder.ask('!compute math {"expression":"6*7"}', home)).startswith('["ok')
    assert (await sharder.ask(f"!bump {home} 42 3", home)) == "bumped 3"


async def test_every_documented_metric_is_scraped_with_sane_values_and_counters_move() -> None:
    async with running_sharder(shards=SHARDS, workers=WORKERS, guilds=GUILDS) as sharder:
        status = await sharder.wait_ready()
        url = status["metrics_url"]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        assert not url.endswith(":0")
        await traffic(sharder)  # the first of each: families with labels have a sample
        before, exposed = await scrape_when(url, lambda s: messages_sent(s) > 0)

        documented = documented_metrics()
        missing = documented - exposed
        assert not missing, f"documented but not scraped: {sorted(missing)}"
        undocumented = {name for name in exposed if name.startswith("sharder_")} - documented
        assert not undocumented, f"scraped but not in docs/metrics.md: {sorted(undocumented)}"

        assert value(before, "sharder_shards") == SHARDS
        assert value(before, "sharder_shard_up") == SHARDS
        assert value(before, "sharder_shard_guilds") == GUILDS
        assert {s.labels["state"] for s in before["sharder_shard_state"]} == {"ready"}
        for worker in range(WORKERS):
            child = f"worker-{worker}"
            assert value(before, "sharder_child_up", child=child) == 1
            assert value(before, "sharder_child_resident_memory_bytes", child=child) > 20e6
            cpu = "sharder_child_cpu_seconds"
            assert value(before, cpu, f"{cpu}_total", child=child) > 0
            rtt = "sharder_child_heartbeat_rtt_seconds"
            assert value(before, rtt, f"{rtt}_count", child=child) > 0
        assert value(before, "sharder_child_up", child="rest-gate") == 1
        latencies = [s.value for s in before["sharder_shard_latency_seconds"]]
        assert len(latencies) == SHARDS and all(0 <= latency < 5 for latency in latencies)
        assert value(before, "sharder_identify_grants", "sharder_identify_grants_total") >= SHARDS
        ready = value(before, "sharder_shard_events", "sharder_shard_events_total", type="READY")
        assert ready == SHARDS
        guild_creates = value(
            before, "sharder_shard_events", "sharder_shard_events_total", type="GUILD_CREATE"
        )
        assert guild_creates == GUILDS
        routes = {s.labels["route"] for s in before["sharder_rest_requests"]}
        assert "POST /channels/{channel_id}/messages" in routes, routes
        assert not any(re.search(r"\d{6}", route) for route in routes), routes  # templates, no ids

        await traffic(sharder)
        after, _ = await scrape_when(url, lambda s: messages_sent(s) > messages_sent(before))

        def grew(family: str, sample: str, **labels: str) -> bool:
            return value(after, family, sample, **labels) > value(before, family, sample, **labels)

        assert grew("sharder_shard_events", "sharder_shard_events_total", type="MESSAGE_CREATE")
        assert grew(
            "sharder_rest_requests",
            "sharder_rest_requests_total",
            route="POST /channels/{channel_id}/messages",
        )
        assert grew(
            "sharder_request_duration_seconds",
            "sharder_request_duration_seconds_count",
            outcome="ok",
        )
        assert grew(
            "sharder_broadcast_duration_seconds",
            "sharder_broadcast_duration_seconds_count",
            outcome="ok",
        )
        assert grew("sharder_compute_tasks", "sharder_compute_tasks_total", outcome="done")
        assert grew(
            "sharder_compute_task_duration_seconds",
            "sharder_compute_task_duration_seconds_count",
            task="math",
            outcome="ok",
        )
        assert grew("sharder_state_commit_changes", "sharder_state_commit_changes_sum")
        assert grew(
            "sharder_state_commit_duration_seconds", "sharder_state_commit_duration_seconds_count"
        )
        assert grew("sharder_uptime_seconds", "sharder_uptime_seconds")


async def answer(
    url: str, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"{url}{path}", json=body, headers=headers) as response,
    ):
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


TOKEN = "a-token-of-twenty-four-c"


async def test_the_dashboard_restarts_only_for_the_admin_token_and_only_for_loopback_names() -> (
    None
):
    async with running_sharder(
        shards=2, workers=2, guilds=8, metrics=f'admin_token = "{TOKEN}"'
    ) as sharder:
        status = await sharder.wait_ready()
        url = status["metrics_url"]
        page = await answer(url, "GET", "/")
        assert page[0] == 200 and "<html" in page[1].lower()
        assert (await answer(url, "GET", "/static/../sharder.toml"))[0] == 404
        assert (await answer(url, "GET", "/static/nothing.js"))[0] == 404
        rebound = await answer(url, "GET", "/metrics", Host="attacker.example:9464")
        assert rebound[0] == 421

        restart = {"worker": 1}
        assert (await answer(url, "POST", "/api/restart", restart))[0] == 401
        wrong = await answer(url, "POST", "/api/restart", restart, Authorization="Bearer nope")
        assert wrong[0] == 401 and wrong[1]["ok"] is False
        bearer = f"Bearer {TOKEN}"
        bad = await answer(url, "POST", "/api/restart", {"worker": "x"}, Authorization=bearer)
        assert bad[0] == 400 and "restart is" in bad[1]["error"]
        unknown = await answer(url, "POST", "/api/restart", {"worker": 9}, Authorization=bearer)
        assert unknown[0] == 409 and "no worker 9" in unknown[1]["error"]

        old_pid = status["workers"][1]["pid"]
        done = await answer(url, "POST", "/api/restart", restart, Authorization=bearer)
        assert done == (200, {"ok": True, "message": "worker 1 restarting"})
        await sharder.wait_until(
            lambda s: (
                s["workers"][1]["pid"] not in (None, old_pid)
                and s["workers"][1]["state"] == "ready"
            )
        )


async def test_read_only_without_a_token_and_a_clear_error_when_the_port_is_taken() -> None:
    async with running_sharder(shards=2, workers=2, guilds=8) as sharder:
        status = await sharder.wait_ready()
        url = status["metrics_url"]
        refused = await answer(url, "POST", "/api/restart", {"rolling": True})
        assert refused[0] == 403 and "read-only" in refused[1]["error"]
        port = url.rsplit(":", 1)[1]
        async with running_sharder(
            shards=1, workers=1, guilds=2, metrics=f'address = "127.0.0.1:{port}"'
        ) as second:
            code = await asyncio.to_thread(second.process.wait, 30)
            assert code == 1
            assert f"cannot listen for metrics on 127.0.0.1:{port}" in second.log()
