"""The in-cluster dashboard's actions: read-only refusals, the proxy's viewer, and the impersonated write as the API
server receives it (a local aiohttp server in its place records every header, repeated ones included)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from modelship.cli import _parser
from modelship.dashboard.acting import READ_ONLY, Acting, Impersonator
from modelship.dashboard.server import Fleet, app
from plugin_fixtures import mdep
from test_dashboard import NOW, PAGE, WatchingApi

CAROL = {**PAGE, "X-Forwarded-User": "carol@example.com", "X-Forwarded-Groups": "ml-leads, oncall,,"}
Recorded = list[dict[str, Any]]


class FakeApiServer:
    """Answers the dashboard's PATCH like the API server would, or refuses with a Status; records what came."""

    def __init__(self) -> None:
        self.seen: Recorded = []
        self.refusal: tuple[int, str] | None = None

    async def patch(self, request: web.Request) -> web.Response:
        self.seen.append({"headers": list(request.headers.items()), "path": request.path,
                          "query": dict(request.query), "body": await request.json()})
        if self.refusal:
            status, message = self.refusal
            return web.json_response({"kind": "Status", "status": "Failure", "message": message,
                                      "reason": "Forbidden", "code": status}, status=status)
        return web.json_response(mdep())


@pytest.fixture
async def kube() -> AsyncIterator[tuple[FakeApiServer, str]]:
    fake = FakeApiServer()
    server = web.Application()
    server.router.add_patch("/apis/modelship.dev/v1alpha1/namespaces/{namespace}/modeldeployments/{name}", fake.patch)
    async with TestServer(server) as running:
        yield fake, str(running.make_url("")).rstrip("/")


def dashboard(acting: Acting, namespace: str | list[str] | None = None) -> tuple[TestClient[Any, Any], WatchingApi]:
    api = WatchingApi(mdep(), mdep(name="churn", namespace="risk", phase="Healthy", stage="Stable",
                                   canaryRevision=None, canaryWeight=0))
    fleet = Fleet(api, namespace, lambda: NOW)
    for kind, obj in api.watch_collection(None):
        fleet.apply(kind, obj)
    return TestClient(TestServer(app(api, namespace, now=lambda: NOW, fleet=fleet, acting=acting))), api


def impersonating(url: str) -> Acting:
    return Acting("impersonate", writer=Impersonator(url, lambda: "Bearer sa-token"))


async def test_read_only_refuses_every_action_and_says_so_on_the_page() -> None:
    """Given the chart's default (read-only), then the pages carry the refusal, every button is disabled with it as
    its tooltip, and a click is refused with 403 and the same words; nothing is written."""
    client, api = dashboard(Acting("read-only"))
    async with client:
        fleet = await (await client.get("/api/fleet")).json()
        assert fleet["refusal"] == READ_ONLY and fleet["viewer"] == ""
        view = await (await client.get("/api/rollouts/ml/fraud-scorer")).json()
        assert set(view["actions"].values()) == {READ_ONLY}
        refused = await client.post("/api/rollouts/ml/fraud-scorer/pause", headers=PAGE)
        assert refused.status == 403
        assert (await refused.json())["error"].startswith("this dashboard is read-only: ")
    assert api.patches == []


async def test_without_the_proxys_user_header_nothing_runs_as_the_service_account(
    kube: tuple[FakeApiServer, str],
) -> None:
    fake, url = kube
    client, api = dashboard(impersonating(url))
    async with client:
        view = await (await client.get("/api/rollouts/ml/fraud-scorer")).json()
        assert view["viewer"] == "" and "no signed-in viewer" in view["actions"]["pause"]
        refused = await client.post("/api/rollouts/ml/fraud-scorer/pause",
                                    headers={**PAGE, "X-Forwarded-Groups": "ml-leads"})
        assert refused.status == 403
        assert "without the X-Forwarded-User header" in (await refused.json())["error"]
        system = await client.post("/api/rollouts/ml/fraud-scorer/pause",
                                   headers={**CAROL, "X-Forwarded-Groups": "system:masters"})
        assert system.status == 403 and "does not act as system:masters" in (await system.json())["error"]
    assert fake.seen == [] and api.patches == []


async def test_the_write_impersonates_the_viewer_with_one_group_header_per_group(
    kube: tuple[FakeApiServer, str],
) -> None:
    """Given a viewer named by the proxy with two groups, when they click pause, then the API server gets one PATCH
    of the annotations, with the dashboard's token, Impersonate-User and one Impersonate-Group per group, and the
    request names the viewer as requester."""
    fake, url = kube
    client, api = dashboard(impersonating(url))
    async with client:
        page = await (await client.get("/api/fleet", headers=CAROL)).json()
        assert page["viewer"] == "carol@example.com" and page["refusal"] == ""
        answer = await client.post("/api/rollouts/ml/fraud-scorer/pause", headers=CAROL)
        assert answer.status == 200, await answer.text()
        assert "as carol@example.com" in (await answer.json())["message"]
    (sent,) = fake.seen
    assert sent["path"] == "/apis/modelship.dev/v1alpha1/namespaces/ml/modeldeployments/fraud-scorer"
    assert sent["query"] == {"fieldManager": "kubectl-modelship"}
    impersonation = [(k, v) for k, v in sent["headers"] if k.lower().startswith("impersonate-")]
    assert impersonation == [("Impersonate-User", "carol@example.com"), ("Impersonate-Group", "ml-leads"),
                             ("Impersonate-Group", "oncall")]
    assert ("Authorization", "Bearer sa-token") in sent["headers"]
    assert ("Content-Type", "application/merge-patch+json") in sent["headers"]
    annotations = sent["body"]["metadata"]["annotations"]
    assert list(sent["body"]) == ["metadata"] and list(sent["body"]["metadata"]) == ["annotations"]
    assert annotations["modelship.dev/requested-by"] == "carol@example.com"
    assert json.loads(annotations["modelship.dev/request"])["action"] == "pause"
    assert api.patches == []  # never through the dashboard's own client


@pytest.mark.parametrize(("message", "expected"), [
    ('modeldeployments.modelship.dev "fraud-scorer" is forbidden: User "carol@example.com" cannot patch resource '
     '"modeldeployments" in API group "modelship.dev" in the namespace "ml"',
     'forbidden: you may not patch modeldeployments.modelship.dev in namespace ml: modeldeployments.modelship.dev '
     '"fraud-scorer" is forbidden: User "carol@example.com" cannot patch'),
    ('users "carol@example.com" is forbidden: User "system:serviceaccount:ops:ms-web" cannot impersonate resource '
     '"users" in API group "" at the cluster scope',
     'forbidden: this dashboard may not act as carol@example.com: users "carol@example.com" is forbidden'),
])
async def test_the_api_servers_refusal_reaches_the_viewer_in_its_words(
    kube: tuple[FakeApiServer, str], message: str, expected: str,
) -> None:
    fake, url = kube
    fake.refusal = (403, message)
    client, _ = dashboard(impersonating(url))
    async with client:
        refused = await client.post("/api/rollouts/ml/fraud-scorer/pause", headers=CAROL)
        assert refused.status == 403
        assert expected in (await refused.json())["error"]


async def test_actions_need_the_pages_header_and_an_object_this_install_serves(
    kube: tuple[FakeApiServer, str],
) -> None:
    """A cross-site form cannot send the page's header; and an impersonating install acts only on what it shows."""
    fake, url = kube
    client, _ = dashboard(impersonating(url), ["ml"])
    async with client:
        forged = await client.post("/api/rollouts/ml/fraud-scorer/pause",
                                   headers={k: v for k, v in CAROL.items() if k not in PAGE})
        assert forged.status == 403 and "X-Modelship-Dashboard" in (await forged.json())["error"]
        elsewhere = await client.post("/api/rollouts/kube-system/anything/pause", headers=CAROL)
        assert elsewhere.status == 404
        assert (await client.get("/healthz")).status == 200
    assert fake.seen == []


def test_a_relist_of_one_namespace_keeps_the_others() -> None:
    api = WatchingApi(mdep(), mdep(name="churn", namespace="risk"))
    fleet = Fleet(api, ["ml", "risk"], lambda: NOW)
    for namespace in fleet.namespaces:
        for kind, obj in api.watch_collection(namespace):
            fleet.apply(kind, obj, namespace)
    fleet.apply("RELIST", {}, "ml")
    assert list(fleet.objects) == [("risk", "churn")]


def test_impersonation_cannot_be_configured_without_its_writer() -> None:
    with pytest.raises(ValueError, match="only act as itself"):
        Acting("impersonate")


def test_the_in_cluster_command_is_read_only_unless_told() -> None:
    args = _parser().parse_args(["dashboard", "-n", "ml", "-n", "risk"])
    assert (args.actions, args.namespace, args.address, args.user_header, args.groups_header) == (
        "read-only", ["ml", "risk"], "0.0.0.0", "X-Forwarded-User", "X-Forwarded-Groups")
