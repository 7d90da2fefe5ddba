"""The chart's in-cluster web dashboard (webDashboard), rendered by the real helm binary.

Off by default (nothing rendered); on, it reads ModelDeployments only (cluster-wide, or in the watched namespaces
in namespaced mode) and has no write verb anywhere; impersonate mode adds `impersonate` on users and groups, scoped
by the listed names, and refuses to render without a NetworkPolicy naming the proxy; its pods never match the
operator's selectors; the schema rejects bad values. The ci/ example is also linted and server-dry-run by
test_chart.py; e2e/scenarios/test_dashboard_impersonation.py installs these RBAC objects on the real API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_support import CHART, run

pytestmark = pytest.mark.integration

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "*"}
WEB = "web-dashboard"
PROXY = ["--set", "webDashboard.networkPolicy.from[0].podSelector.matchLabels.app=oauth2-proxy"]


def docs(helm: Path, *settings: str) -> list[dict[str, Any]]:
    proc = run(helm, "template", "m", CHART, "--namespace", "ops", *settings)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def web(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in found if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == WEB]


def rules(found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for d in web(found) if d["kind"] in ("Role", "ClusterRole") for rule in d["rules"]]


def test_off_by_default(helm: Path) -> None:
    assert web(docs(helm)) == []


def test_read_only_reads_model_deployments_and_writes_nothing(helm: Path) -> None:
    found = docs(helm, "--set", "webDashboard.enabled=true")
    kinds = sorted(d["kind"] for d in web(found))
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    assert rules(found) == [{"apiGroups": ["modelship.dev"], "resources": ["modeldeployments"],
                             "verbs": ["get", "list", "watch"]}]
    (deployment,) = [d for d in web(found) if d["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["modelship", "dashboard"]
    assert "--actions=read-only" in container["args"] and not any("header" in a for a in container["args"])
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == "m-modelship-web"
    (binding,) = [d for d in web(found) if d["kind"] == "ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "m-modelship-web", "namespace": "ops"}]


def test_its_pods_are_not_the_operators(helm: Path) -> None:
    """The operator's metrics Service and PodDisruptionBudget select on its labels: the dashboard's must differ."""
    found = docs(helm, "--set", "webDashboard.enabled=true")
    dashboard_pod = next(d for d in web(found) if d["kind"] == "Deployment")["spec"]["template"]["metadata"]["labels"]
    selectors = [d["spec"]["selector"] for d in found if d["kind"] == "Service" and d not in web(found)]
    selectors += [d["spec"]["selector"]["matchLabels"] for d in found
                  if d["kind"] in ("Deployment", "PodDisruptionBudget") and d not in web(found)]
    assert selectors
    for selector in selectors:
        assert not selector.items() <= dashboard_pod.items(), selector


def test_namespaced_mode_reads_only_the_watched_namespaces(helm: Path) -> None:
    found = docs(helm, "--set", "webDashboard.enabled=true", "--set", "watchNamespaces={ml-a,ml-b}")
    roles = [d for d in web(found) if d["kind"] in ("Role", "ClusterRole")]
    assert sorted((d["kind"], d["metadata"].get("namespace")) for d in roles) == [("Role", "ml-a"), ("Role", "ml-b")]
    args = next(d for d in web(found) if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=ml-a" in args and "--namespace=ml-b" in args


def test_impersonate_adds_impersonation_scoped_by_name_and_a_network_policy(helm: Path) -> None:
    found = docs(helm, "--set", "webDashboard.enabled=true", "--set", "webDashboard.actions=impersonate",
                 "--set", "webDashboard.impersonate.users={alice@example.com}",
                 "--set", "webDashboard.impersonate.groups={ml-leads,ml-oncall}", *PROXY)
    granted = rules(found)
    assert {v for rule in granted for v in rule["verbs"]} & WRITE_VERBS == set()
    assert [r for r in granted if "impersonate" in r["verbs"]] == [
        {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["alice@example.com"]},
        {"apiGroups": [""], "resources": ["groups"], "verbs": ["impersonate"],
         "resourceNames": ["ml-leads", "ml-oncall"]}]
    (policy,) = [d for d in web(found) if d["kind"] == "NetworkPolicy"]
    assert policy["spec"]["ingress"] == [{"from": [{"podSelector": {"matchLabels": {"app": "oauth2-proxy"}}}],
                                          "ports": [{"port": "http", "protocol": "TCP"}]}]
    args = next(d for d in web(found) if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert {"--actions=impersonate", "--user-header=X-Forwarded-User", "--groups-header=X-Forwarded-Groups"} <= set(
        args)


def test_impersonate_without_naming_the_proxy_is_refused(helm: Path) -> None:
    proc = run(helm, "template", "m", CHART, "--set", "webDashboard.enabled=true",
               "--set", "webDashboard.actions=impersonate")
    assert proc.returncode != 0 and "set webDashboard.networkPolicy.from" in proc.stderr, proc.stderr


@pytest.mark.parametrize(("setting", "message"), [
    ("webDashboard.actions=admin", "/webDashboard/actions"),
    ("webDashboard.proxy.userHeader=X User", "/webDashboard/proxy/userHeader"),
    ("webDashboard.port=80", "/webDashboard/port"),
    ("webDashboard.prometheusUrl=prometheus:9090", "/webDashboard/prometheusUrl"),
    ("webDashboard.bogus=1", "additional properties 'bogus' not allowed"),
])
def test_schema_rejects_bad_values(helm: Path, setting: str, message: str) -> None:
    proc = run(helm, "template", "m", CHART, "--set", "webDashboard.enabled=true", "--set", setting)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
