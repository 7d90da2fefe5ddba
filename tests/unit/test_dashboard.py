"""The dashboard's views and server, driven through aiohttp's test client with an in-memory ClusterApi."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from modelship.dashboard.server import Fleet, app
from modelship.dashboard.views import Timeline, actions, fleet_row, rollout_view
from modelship.plugin.errors import PluginError
from plugin_fixtures import FakeApi, mdep

NOW = datetime(2024, 5, 1, 10, 14, tzinfo=UTC)
PAGE = {"X-Modelship-Dashboard": "1"}  # what the page's own fetch sends with an action


class WatchingApi(FakeApi):
    def watch_collection(self, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        yield "RELIST", {}
        for obj in self.list(namespace):
            yield "ADDED", obj


class RefusingApi(WatchingApi):
    """The API server's answer to a viewer without `patch` on modeldeployments."""

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        raise PluginError(f'modeldeployments.modelship.dev "{name}" is forbidden: User "bob" cannot patch '
                          f'resource "modeldeployments" in API group "modelship.dev" in the namespace "{namespace}"')


def test_a_fleet_row_says_where_each_rollout_is() -> None:
    row = fleet_row(mdep(), NOW)
    assert {k: row[k] for k in ("namespace", "name", "phase", "stage", "canaryWeight", "stable", "canary",
                                "verdict")} == {"namespace": "ml", "name": "fraud-scorer", "phase": "Progressing",
                                                "stage": "Canary", "canaryWeight": 25, "stable": "6", "canary": "7",
                                                "verdict": "Fail"}  # fmt: skip
    assert row["inStepSeconds"] == 240.0  # step started 10:10, now 10:14


def test_buttons_follow_the_plugins_rules_with_its_words() -> None:
    """Given a canary not waiting at a gate, then promote is refused with the plugin's reason, abort and pause
    apply, resume and retry do not."""
    live = actions(mdep())
    assert "not waiting for approval" in live["promote"]
    assert live["abort"] == live["pause"] == live["promote-full"] == ""
    assert live["resume"] and live["retry"]


def test_the_rollout_view_splits_evidence_from_answers_and_shows_history_newest_first() -> None:
    obj = mdep()
    obj["status"]["lastAnalysis"]["metrics"].append({"name": "outputShift", "value": 0.4, "max": 0.25,
                                                      "verdict": "Fail"})
    view = rollout_view(obj, NOW)
    assert [m["name"] for m in view["comparison"]] == ["outputShift"]
    assert "outputShift" not in [m["name"] for m in view["evidence"]]
    assert view["history"][0] == obj["status"]["history"][-1]


def test_the_timeline_keeps_a_point_per_change_and_each_check_once() -> None:
    timeline, obj = Timeline(limit=5), mdep()
    for _ in range(3):
        timeline.observe(obj, NOW)  # no change: one point
    moved = copy.deepcopy(obj)
    moved["status"]["canaryWeight"] = 50
    timeline.observe(moved, NOW)
    points = timeline.points(("ml", "fraud-scorer"))
    assert [p["canaryWeight"] for p in points] == [25, 50]
    assert points[0]["slos"]["latencyP99Ms"] == {"value": 310.5, "max": 250, "min": None, "verdict": "Fail"}
    assert "slos" not in points[1]


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[Any, Any], WatchingApi, Fleet]]:
    api = WatchingApi(mdep(), mdep(name="churn", namespace="risk", phase="Healthy", stage="Stable",
                                   canaryRevision=None, canaryWeight=0))
    fleet = Fleet(api, None, lambda: NOW)
    for kind, obj in api.watch_collection(None):
        fleet.apply(kind, obj)
    test_client = TestClient(TestServer(app(api, None, now=lambda: NOW, fleet=fleet)))
    await test_client.start_server()
    yield test_client, api, fleet
    await test_client.close()


async def test_the_fleet_page_lists_every_rollout_filterable_by_namespace(
    client: tuple[TestClient[Any, Any], WatchingApi, Fleet],
) -> None:
    test_client, _, _ = client
    every = await (await test_client.get("/api/fleet")).json()
    assert [(r["namespace"], r["name"]) for r in every["rows"]] == [("ml", "fraud-scorer"), ("risk", "churn")]
    assert every["viewer"] == "alice@example.com"
    risk = await (await test_client.get("/api/fleet?namespace=risk")).json()
    assert [r["name"] for r in risk["rows"]] == ["churn"]
    page = await test_client.get("/rollouts/ml/fraud-scorer")
    assert page.status == 200 and "app.js" in await page.text()
    assert (await test_client.get("/static/app.js")).status == 200


async def test_an_action_is_sent_as_the_viewer_and_a_refusal_is_shown_as_the_api_server_said_it(
    client: tuple[TestClient[Any, Any], WatchingApi, Fleet],
) -> None:
    test_client, api, _ = client
    answer = await test_client.post("/api/rollouts/ml/fraud-scorer/pause", headers=PAGE)
    assert answer.status == 200 and "as alice@example.com" in (await answer.json())["message"]
    ((namespace, name, annotations),) = api.patches
    assert (namespace, name) == ("ml", "fraud-scorer")
    assert annotations["modelship.dev/requested-by"] == "alice@example.com"
    assert json.loads(annotations["modelship.dev/request"])["action"] == "pause"
    refused = await test_client.post("/api/rollouts/risk/churn/abort", headers=PAGE)  # nothing to abort
    assert refused.status == 409 and "no canary rollout in progress" in (await refused.json())["error"]


async def test_rbac_refusals_come_back_as_403_with_the_api_servers_words() -> None:
    api = RefusingApi(mdep())
    fleet = Fleet(api, None, lambda: NOW)
    for kind, obj in api.watch_collection(None):
        fleet.apply(kind, obj)
    async with TestClient(TestServer(app(api, None, now=lambda: NOW, fleet=fleet))) as test_client:
        refused = await test_client.post("/api/rollouts/ml/fraud-scorer/abort", headers=PAGE)
        assert refused.status == 403 and 'User "bob" cannot patch' in (await refused.json())["error"]


async def test_changes_reach_open_pages_as_server_sent_events(
    client: tuple[TestClient[Any, Any], WatchingApi, Fleet],
) -> None:
    test_client, _, fleet = client
    response = await test_client.get("/api/events")
    assert (await response.content.readline()).startswith(b": connected")
    await response.content.readline()
    changed = mdep(phase="RolledBack", canaryWeight=0)
    fleet.apply("MODIFIED", changed)
    line = await asyncio.wait_for(response.content.readline(), 5)
    event = json.loads(line.removeprefix(b"data: "))
    assert event["kind"] == "MODIFIED" and event["row"]["phase"] == "RolledBack"
    detail = await (await test_client.get("/api/rollouts/ml/fraud-scorer")).json()
    assert [p["phase"] for p in detail["timeline"]] == ["Progressing", "RolledBack"]
    response.close()


async def test_a_timeline_starts_with_the_operators_prometheus_series() -> None:
    """Given a Prometheus holding the operator's series for an object from before the dashboard started, when its
    rollout page is first asked for, then the timeline starts with those points (weight, each SLO's value and
    bound), oldest first, followed by what the dashboard saw itself."""
    asked: list[str] = []
    start = NOW.timestamp() - 120

    async def query_range(request: web.Request) -> web.Response:
        query = request.query["query"]
        asked.append(query)
        metric = query.split("{", 1)[0]
        values = {"modelship_canary_weight": [(start, "10"), (start + 60, "25")],
                  "modelship_slo_value": [(start, "0.001"), (start + 60, "0.002")],
                  "modelship_slo_bound": [(start, "0.01"), (start + 60, "0.01")]}[metric]
        labels = {"namespace": "ml", "name": "fraud-scorer"} | ({} if "weight" in metric else {"slo": "errorRate"})
        return web.json_response({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": labels, "values": [[t, v] for t, v in values]}]}})

    prometheus = web.Application()
    prometheus.router.add_get("/api/v1/query_range", query_range)
    async with TestServer(prometheus) as prom:
        api = WatchingApi(mdep())
        fleet = Fleet(api, None, lambda: NOW)
        for kind, obj in api.watch_collection(None):
            fleet.apply(kind, obj)
        dashboard = app(api, None, now=lambda: NOW, fleet=fleet, prometheus_url=str(prom.make_url("")))
        async with TestClient(TestServer(dashboard)) as test_client:
            detail = await (await test_client.get("/api/rollouts/ml/fraud-scorer")).json()
    timeline = detail["timeline"]
    assert [p["canaryWeight"] for p in timeline] == [10, 25, 25]  # two from Prometheus, then the one it saw
    assert timeline[1]["slos"]["errorRate"] == {"value": 0.002, "max": 0.01}
    assert all('namespace="ml", name="fraud-scorer"' in q for q in asked) and len(asked) == 3
