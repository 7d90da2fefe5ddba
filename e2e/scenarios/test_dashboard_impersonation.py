"""The in-cluster dashboard acting as the viewer, against the real API server (issue 12 item 1).

The chart's own webDashboard RBAC (helm template, impersonate mode, this namespace watched) is applied for real;
`modelship dashboard --actions impersonate` runs with that ServiceAccount's token, as in its pod, and the test plays
the authenticating proxy (X-Forwarded-User, X-Forwarded-Groups). At an approval gate: without a user header
nothing is done; a user the chart does not list cannot be impersonated; a listed user without RBAC gets the API
server's refusal; carol, allowed to patch only through one of her two groups (so both Impersonate-Group headers
reach the API server), promotes, and the request annotation, the requester policy and history all name carol.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.conftest import OperatorFactory
from e2e.harness import Kubectl, status_when
from e2e.manifests import model_deployment
from e2e.scenarios.test_control import healthy
from e2e.scenarios.test_dashboard_browser import STEPS, serving
from e2e.stack import CACHE, REPO, StackContext, load_versions
from e2e.stack.traffic import TrafficGenerator

pytestmark = pytest.mark.e2e

NAME = "fraud"
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


def chart_rbac(ns: str, release: str, users: list[str], groups: list[str]) -> list[dict[str, Any]]:
    """The chart's webDashboard ServiceAccount and RBAC for impersonate mode, watching `ns` only."""
    helm = CACHE / "bin" / f"helm-{load_versions()['HELM_VERSION']}" / "helm"
    if not helm.exists():
        pytest.skip("helm is not built yet (e2e/stack/build-helm.sh; the chart tests build it)")
    settings = [f"watchNamespaces={{{ns}}}", "webDashboard.enabled=true", "webDashboard.actions=impersonate",
                f"webDashboard.impersonate.users={{{','.join(users)}}}",
                f"webDashboard.impersonate.groups={{{','.join(groups)}}}",
                "webDashboard.networkPolicy.from[0].podSelector.matchLabels.app=oauth2-proxy"]
    proc = subprocess.run([str(helm), "template", release, str(REPO / "charts" / "modelship"), "--namespace", ns,
                           *(arg for s in settings for arg in ("--set", s))],
                          capture_output=True, text=True, timeout=120, check=True)
    return [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] in RBAC_KINDS
            and d["metadata"]["labels"].get("app.kubernetes.io/component") == "web-dashboard"]


def token_kubeconfig(kubectl: Kubectl, ns: str, account: str, into: Path) -> Path:
    token = kubectl.run("create", "token", account, "-n", ns, "--duration=1h").stdout.strip()
    cluster = json.loads(kubectl.run("config", "view", "--raw", "-o", "json").stdout)["clusters"][0]
    into.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster], "current-context": "web",
        "users": [{"name": "web", "user": {"token": token}}],
        "contexts": [{"name": "web", "context": {"cluster": cluster["name"], "user": "web", "namespace": ns}}],
    }))  # fmt: skip
    return into


def served(kubeconfig: Path, ns: str) -> AbstractContextManager[str]:
    """`modelship dashboard` as the chart runs it (impersonate mode), on a loopback port; its URL."""
    return serving([str(REPO / ".venv" / "bin" / "modelship"), "dashboard", "--kubeconfig", str(kubeconfig),
                    "--actions", "impersonate", "-n", ns, "--address", "127.0.0.1"])


def click(url: str, action: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """What the proxy forwards when the page's button is clicked."""
    request = urllib.request.Request(f"{url}/api/rollouts/{action}", method="POST",
                                     headers={"X-Modelship-Dashboard": "1", **headers})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_actions_run_as_the_proxys_viewer_through_impersonation(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    stack: StackContext, tmp_path: Path,
) -> None:
    ns, suffix = namespace, uuid.uuid4().hex[:6]
    carol, dave, leads, oncall = f"carol-{suffix}", f"dave-{suffix}", f"leads-{suffix}", f"oncall-{suffix}"
    release = f"web-{suffix}"
    objects = chart_rbac(ns, release, [carol, dave], [leads, oncall])
    cluster_scoped = [d for d in objects if d["kind"].startswith("Cluster")]
    try:
        for obj in objects:
            kubectl.apply(obj)
        kubectl.run("create", "role", "steer", "-n", ns, "--verb=get,patch",
                    "--resource=modeldeployments.modelship.dev")
        kubectl.run("create", "rolebinding", "steer-leads", "-n", ns, "--role=steer", f"--group={leads}")
        account = next(d["metadata"]["name"] for d in objects if d["kind"] == "ServiceAccount")
        config = token_kubeconfig(kubectl, ns, account, tmp_path / "web.kubeconfig")

        operator(ns)
        kubectl.apply(model_deployment(NAME, ns, "1", steps=STEPS))
        healthy(kubectl, ns, "1")
        traffic(ns, NAME)
        kubectl.apply(model_deployment(NAME, ns, "2", steps=STEPS))
        status_when(kubectl, ns, "v2 at its gate", lambda s: bool(s.get("awaitingApproval")), timeout=90)
        with served(config, ns) as url:
            promote = f"{ns}/{NAME}/promote"
            status, answer = click(url, promote, {"X-Forwarded-Groups": leads})
            assert status == 403 and "no signed-in viewer" in answer["error"], answer
            status, answer = click(url, promote, {"X-Forwarded-User": f"mallory-{suffix}"})
            assert status == 403 and f"this dashboard may not act as mallory-{suffix}" in answer["error"], answer
            assert "cannot impersonate" in answer["error"]  # the API server's words
            status, answer = click(url, promote, {"X-Forwarded-User": dave})
            assert status == 403, answer
            assert f'User "{dave}" cannot patch resource "modeldeployments"' in answer["error"], answer
            assert kubectl.status(NAME, ns).get("awaitingApproval"), "a refused click changed nothing"

            status, answer = click(url, promote, {"X-Forwarded-User": carol,
                                                  "X-Forwarded-Groups": f"{oncall}, {leads}"})
            assert status == 200 and f"as {carol}" in answer["message"], answer
        obj = json.loads(kubectl.run("get", "modeldeployment", NAME, "-n", ns, "-o", "json").stdout)
        assert obj["metadata"]["annotations"]["modelship.dev/requested-by"] == carol
        done = healthy(kubectl, ns, "2", timeout=60)
        approved = [h for h in done["history"] if h["event"] == "Approved" and h["version"] == "2"]
        assert len(approved) == 1 and approved[0]["by"] == carol, approved
    finally:
        for obj in cluster_scoped:
            kubectl.run("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found", check=False)
