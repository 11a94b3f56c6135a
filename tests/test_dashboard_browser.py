"""The dashboard in a real browser: Debian's chromium, driven by Playwright's driver (no browser
download), against a running ``--simulate`` sharder. ``make test`` installs chromium with apt
when it is missing (``make browser``)."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

from playwright.async_api import ConsoleMessage, Error, Page, async_playwright, expect

from simulator.child import call_control
from tests.sharder_run import running_sharder

CHROMIUM = "/usr/bin/chromium"
# As the machine's own browser checks run it: nothing reaches for Google's services.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
SHARDS = 4
RESTART_TIMEOUT = 30_000  # ms: a killed worker is back well within this


def chromium() -> str:
    found = shutil.which("chromium") or (CHROMIUM if os.path.exists(CHROMIUM) else None)
    assert found, (
        "Debian's chromium is not installed: run `make browser` (apt-get install chromium)"
    )
    return found


async def test_the_dashboard_shows_every_shard_and_a_killed_worker_going_down_and_back() -> None:
    async with running_sharder(shards=SHARDS, workers=2, guilds=8) as sharder:
        status = await sharder.wait_ready()
        sim = await sharder.simulator()
        guild_id = (await call_control(sim.control_url, "GET", "/world"))["guild_ids"][0]
        problems: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type in ("error", "warning"):
                problems.append(f"console {message.type}: {message.text}")

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=chromium(), args=CHROMIUM_FLAGS, headless=True
            )
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on("console", on_console)
                page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
                await page.goto(f"{status['metrics_url']}/")
                await expect(page.locator("#connection")).to_have_text("live")
                ready = page.locator('#shards .tile[data-state="ready"]')
                await expect(page.locator("#shards .tile")).to_have_count(SHARDS)
                await expect(ready).to_have_count(SHARDS)
                await expect(page.locator('#workers tr[data-name="worker-1"]')).to_be_visible()

                await look_up(page, guild_id, SHARDS)

                victim = status["workers"][1]
                os.kill(victim["pid"], signal.SIGKILL)
                for shard_id in victim["shards"]:
                    tile = page.locator(f'#shards .tile[data-shard="{shard_id}"]')
                    await expect(tile).not_to_have_attribute("data-state", "ready")
                await expect(ready).to_have_count(SHARDS, timeout=RESTART_TIMEOUT)
                exits = page.locator('#incidents li.incident[data-kind="exit"]')
                await expect(exits.first).to_contain_text("worker 1 exited (killed by SIGKILL)")

                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=ARTIFACTS / "dashboard.png", full_page=True)
            except Error:
                ARTIFACTS.mkdir(exist_ok=True)
                await page.screenshot(path=ARTIFACTS / "dashboard-failed.png", full_page=True)
                raise
            finally:
                await browser.close()
        assert not problems, problems


async def look_up(page: Page, guild_id: int, shard_count: int) -> None:
    shard_id = (guild_id >> 22) % shard_count
    await page.locator("#guild-input").fill(str(guild_id))
    await page.locator("#guild-input").press("Enter")
    result = page.locator("#guild-result")
    await expect(result).to_contain_text(f"shard {shard_id} on worker {shard_id // 2}")
    await page.locator("#guild-input").fill("not a number")
    await page.locator("#guild-input").press("Enter")
    await expect(result).to_have_text("not a guild id")
