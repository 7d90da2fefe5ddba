"""The dashboard's pages in Debian's Chromium (Playwright), against the real server app fed in memory: no script
error, the fleet table, the charts with their bounds, a button that acts and says as whom. The same pages
against the real stack are e2e/scenarios/test_dashboard_browser.py."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from modelship.dashboard.server import Fleet, app

from e2e.stack.triton import free_port

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def served() -> Iterator[tuple[str, Any]]:
    import sys  # noqa: PLC0415

    sys.path.insert(0, str(Path(__file__).parents[1] / "unit"))
    from plugin_fixtures import mdep  # noqa: PLC0415
    from test_dashboard import WatchingApi  # noqa: PLC0415

    api = WatchingApi(mdep(), mdep(name="churn", namespace="risk", phase="Healthy", stage="Stable",
                                   canaryRevision=None, canaryWeight=0))
    fleet = Fleet(api, None, lambda: datetime.now(UTC))
    for kind, obj in api.watch_collection(None):
        fleet.apply(kind, obj)
    later = mdep(canaryWeight=50)
    later["status"]["lastAnalysis"]["time"] = "2024-05-01T10:14:30Z"
    fleet.apply("MODIFIED", later)
    loop, port = asyncio.new_event_loop(), free_port()
    runner = web.AppRunner(app(api, None, fleet=fleet))

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}", (fleet, copy.deepcopy(later))
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)  # open event streams end too
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def test_the_pages_render_act_and_update_live_in_chromium(served: tuple[str, Any]) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: make deps installs it (apt-get install chromium)")
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    url, (fleet, later) = served
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        page = browser.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(url)
        page.wait_for_selector('tr[data-key="ml/fraud-scorer"]', timeout=10_000)
        assert "50%" in page.inner_text('tr[data-key="ml/fraud-scorer"]')
        page.click("text=fraud-scorer")
        page.wait_for_selector('[data-chart="latencyP99Ms"]', timeout=10_000)
        assert "max" in page.inner_text('[data-chart="latencyP99Ms"]')
        assert page.is_disabled('button[data-action="promote"]')  # not at a gate: the plugin's rule
        assert "not waiting for approval" in (page.get_attribute('button[data-action="promote"]', "title") or "")
        page.click('button[data-action="pause"]')
        page.wait_for_selector("#notice.ok", timeout=10_000)
        assert "as alice@example.com" in page.inner_text("#notice")
        page.wait_for_selector("#live.on", timeout=10_000)
        later["status"]["phase"] = "RolledBack"
        fleet.apply("MODIFIED", later)  # pushed to the open page: no reload
        page.wait_for_function("document.body.innerText.includes('RolledBack')", timeout=10_000)
        browser.close()
    assert errors == []
