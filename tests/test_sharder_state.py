"""Shared state end to end: workers write through the master to the durable store, every worker
holding a key sees the master's value, a restarted worker or master loses nothing acknowledged,
and a change made on the master is used by the owning shard's next command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from simulator.child import call_control
from tests.sharder_run import RunningSharder, restart_in, run_cli, running_sharder

SHARDS = 4
USER = 4242


async def guilds(run: RunningSharder) -> list[int]:
    sim = await run.simulator()
    world = await call_control(sim.control_url, "GET", "/world")
    return list(world["guild_ids"])


async def master_value(run: RunningSharder, scope: str, key: str) -> Any:
    answer = await run.command({"command": "state_get", "scope": scope, "key": key})
    assert answer["ok"], answer
    return answer["value"]


async def test_a_prefix_set_on_the_master_is_used_by_the_next_command() -> None:
    async with running_sharder(shards=SHARDS, workers=2, guilds=8) as run:
        await run.wait_ready()
        guild = (await guilds(run))[3]
        result = await asyncio.to_thread(
            run_cli, "state", "set", "guild_config", str(guild), "prefix=?", cwd=run.directory
        )
        assert result.returncode == 0, result.stderr
        old = await run.say("!ping", guild)
        new = await run.say("?ping", guild)
        assert (await run.reply_to(new)).startswith("pong from shard 3")
        await asyncio.sleep(0.5)
        sim = await run.simulator()
        replies = await call_control(sim.control_url, "GET", "/messages")
        answered = {(r["message_reference"] or {}).get("message_id") for r in replies}
        assert str(old["id"]) not in answered, "the old prefix was still answered"
        # And back through the bot's own command, a write from the worker.
        owner = (await run.guild(guild))["owner_id"]
        assert await run.ask("?prefix >>", guild, author_id=owner) == "the prefix is now >>"
        assert await master_value(run, "guild_config", str(guild)) == {"prefix": ">>"}
        shown = await asyncio.to_thread(
            run_cli, "state", "get", "guild_config", str(guild), cwd=run.directory
        )
        assert json.loads(shown.stdout) == {"prefix": ">>"}


async def test_four_workers_writing_the_same_keys_converge_on_the_masters_value() -> None:
    # Simulated users talk all along: their messages count as member activity too.
    traffic = "traffic_rate = 40\nrest_route_limit = 1000\n"
    async with running_sharder(shards=SHARDS, workers=4, guilds=8, simulator=traffic) as run:
        await run.wait_ready()
        world = await guilds(run)
        target = world[0]  # its member activity lives with worker 0
        homes = [next(g for g in world if (g >> 22) % SHARDS == shard) for shard in range(SHARDS)]
        sent = [await run.say(f"!bump {target} {USER} 50", home) for home in homes]
        sent += [await run.say(f"!afk {USER} away from shard {n}", homes[n]) for n in range(4)]
        for message in sent:
            await run.reply_to(message)
        key = f"{target}:{USER}"
        assert await master_value(run, "member_activity", key) == {"bump": 200}
        owner_view = await run.ask(f"!call {target} activity {USER}", homes[1])
        assert owner_view == 'ok {"bump": 200}'
        master_user = await master_value(run, "user_data", str(USER))
        views = json.loads(await run.ask(f"!all user {USER}", homes[0]))
        assert all(view["value"] == master_user for view in views.values()), (views, master_user)


async def test_a_killed_worker_comes_back_with_the_masters_view_before_its_traffic() -> None:
    # Without the session handoff, so that Discord does not replay the !stream command into the
    # new process and the master's value stays still once the writer is dead.
    async with running_sharder(
        shards=SHARDS, workers=2, guilds=8, supervisor="resume_sessions = false"
    ) as run:
        status = await run.wait_ready()
        world = await guilds(run)
        home = next(g for g in world if (g >> 22) % SHARDS == 2)  # on worker 1
        await run.say(f"!stream {home} {USER} 100000", home)
        key = f"{home}:{USER}"
        for _ in range(200):
            if (await master_value(run, "member_activity", key) or {}).get("stream", 0) > 100:
                break
            await asyncio.sleep(0.05)
        os.kill(status["workers"][1]["pid"], signal.SIGKILL)
        acknowledged = await master_value(run, "member_activity", key)
        await run.wait_until(
            lambda s: (
                s["workers"][1]["pid"] not in (None, status["workers"][1]["pid"])
                and all(shard["state"] == "ready" for shard in s["shards"])
            )
        )
        final = await master_value(run, "member_activity", key)
        assert final["stream"] >= acknowledged["stream"] > 0  # nothing acknowledged was lost
        view = await run.ask(f"!call {home} activity {USER}", home)
        assert json.loads(view.removeprefix("ok ")) == final


async def test_a_killed_master_comes_back_with_every_acknowledged_change() -> None:
    async with running_sharder(shards=2, workers=1, guilds=4) as run:
        await run.wait_ready()
        guild = (await guilds(run))[0]
        acknowledged = 0
        for n in range(1, 400):
            answer = await run.command(
                {"command": "state_set", "scope": "user_data", "key": str(USER), "fields": {"n": n}}
            )
            assert answer["ok"], answer
            acknowledged = n
            if n == 150:
                os.killpg(run.process.pid, signal.SIGKILL)  # the master and everything with it
                break
        await asyncio.to_thread(run.process.wait, 10)
        async with restart_in(run) as again:
            await again.wait_ready()
            assert await master_value(again, "user_data", str(USER)) == {"n": acknowledged}
            assert guild in await guilds(again)


async def test_the_reference_bots_state_commands_across_workers() -> None:
    async with running_sharder(shards=SHARDS, workers=2, guilds=8) as run:
        await run.wait_ready()
        world = await guilds(run)
        first = next(g for g in world if (g >> 22) % SHARDS == 0)  # worker 0
        second = next(g for g in world if (g >> 22) % SHARDS == 3)  # worker 1
        away = await run.say("!afk at lunch", first)
        assert await run.reply_to(away) == "away: at lunch"
        # Cross-guild user data: the note is read on the other worker, in another guild.
        writer = away["author_id"]
        assert await run.ask(f"!note {writer}", second) == f"{writer} is away: at lunch"
        owner = (await run.guild(first))["owner_id"]
        assert await run.ask("!grant 123 kick", first, author_id=owner) == "granted kick to 123"
        assert await run.ask("!grant", first) == "grants: 123:kick"
        ranking = await run.ask("!top", first)
        assert ranking.startswith("top: ") and f"{writer} (" in ranking


async def test_a_presence_seen_by_one_shard_is_asked_for_from_another_worker() -> None:
    async with running_sharder(shards=SHARDS, workers=2, guilds=8) as run:
        await run.wait_ready()
        world = await guilds(run)
        seen_on_worker_0 = next(g for g in world if (g >> 22) % SHARDS == 1)
        asked_on_worker_1 = next(g for g in world if (g >> 22) % SHARDS == 2)
        sim = await run.simulator()
        presence = await call_control(
            sim.control_url, "POST", "/presences", {"status": "dnd", "guild_id": seen_on_worker_0}
        )
        user = presence["user_id"]
        for _ in range(100):
            if (
                await run.ask(
                    f"!call {asked_on_worker_1} presence {seen_on_worker_0}:{user}",
                    asked_on_worker_1,
                )
                == 'ok "dnd"'
            ):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("worker 1 never got the presence from worker 0")


async def test_only_members_who_may_manage_the_server_change_its_prefix_or_grants() -> None:
    async with running_sharder(shards=SHARDS, workers=2, guilds=8) as run:
        await run.wait_ready()
        guild = (await guilds(run))[0]
        facts = await run.guild(guild)
        owner, moderators = facts["owner_id"], facts["moderator_ids"]
        member = next(
            user for user in facts["member_ids"][1:] if user != owner and user not in moderators
        )
        moderator = next(user for user in moderators if user != owner)
        refused = "only members who may manage this server can change its prefix"
        assert await run.ask("!prefix ?", guild, author_id=member) == refused
        assert await run.ask("!prefix", guild, author_id=member) == "the prefix here is !"
        assert await run.ask("!grant 1 ban", guild, author_id=member) == (
            "only members who may manage this server can change its grant"
        )
        assert await master_value(run, "guild_config", str(guild)) is None
        assert await run.ask("!prefix ?", guild, author_id=moderator) == "the prefix is now ?"
        assert await run.ask("?grant 1 ban", guild, author_id=owner) == "granted ban to 1"
