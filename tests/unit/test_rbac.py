"""Least privilege, pinned both ways: the chart grants exactly what the operator's code calls plus kopf's needs.

The code side is measured, not listed: every Kubernetes adapter path (revisions, pods, routes of each kind,
clean-up, Events, the Namespace read) runs over a recording transport and each request becomes
(API group, resource, verb); a server-side apply counts as `patch` and `create` (it creates what is missing).
kopf's needs are the one hand-kept list (`KOPF`), from kopf's own RBAC documentation. docs/install.md's
table must say the same as the chart.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import yaml
from adapter_fixtures import CANARY, OWNER, STABLE, FakeTransport, fake_kube, make_spec
from modelship.adapters import objects
from modelship.adapters.cache import WATCHED_CHILDREN, WatchCache
from modelship.adapters.cluster import KubeCluster
from modelship.adapters.gateway_support import GatewaySupportReader
from modelship.adapters.kube import APPLY_CONTENT_TYPE, Kube
from modelship.adapters.metrics.factory import MetricsSettings, MetricsSources
from modelship.adapters.metrics.prometheus import PrometheusSettings
from modelship.adapters.modeldeployments import ModelDeploymentWrites
from modelship.adapters.notify import DeliveryError, read_secret
from modelship.adapters.routers.factory import router_for
from modelship.controller.wiring import PrometheusMetrics
from modelship.domain.actions import EnsureComparator, EventType, Role, SetTraffic
from modelship.domain.api import ParentRef
from modelship.domain.compare_spec import CompareSpec
from modelship.domain.notify_spec import SecretKeyRef
from modelship.domain.revision import revision_hash

REPO = Path(__file__).resolve().parents[2]
HELPERS = REPO / "charts" / "modelship" / "templates" / "_helpers.tpl"
INSTALL = REPO / "docs" / "install.md"

Grant = tuple[str, str, str]  # (API group, resource, verb)

KOPF: set[Grant] = {
    # watch the custom resource (the control loop patches status and its finalizer itself: measured above)
    ("modelship.dev", "modeldeployments", "list"),
    ("modelship.dev", "modeldeployments", "watch"),
    ("", "events", "create"),  # kopf posts its own Events (core v1)
}
WATCHES: set[Grant] = {
    (group_version.rpartition("/")[0], plural, verb)
    for group_version, plural, _ in WATCHED_CHILDREN
    for verb in ("list", "watch")
}
"""The informer (adapters/informer.py) lists and watches every child kind."""
KOPF_CLUSTER: set[Grant] = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}
KOPF_NAMESPACE_SCAN: set[Grant] = {("", "namespaces", "list"), ("", "namespaces", "watch")}
"""Only with --namespace (kopf scans namespaces then); cluster-wide kopf does not look at them."""
BIND: set[Grant] = {("rbac.authorization.k8s.io", "clusterroles", "bind")}
"""Binding the `modelship-comparator` ClusterRole (only it, by resourceNames) to a comparator's ServiceAccount:
the API server checks `bind`, not a request the operator sends."""
GATEWAY_READS = {"gateways", "gatewayclasses"}
"""Cluster-wide in both modes: the Gateway a route attaches to is usually in another namespace (its class is
cluster-scoped); read to refuse a mirror it cannot make (adapters/gateway_support.py)."""
OTHER_CLUSTER_RULES = {"validatingadmissionpolicies", "validatingadmissionpolicybindings"}
"""Read by name by the requester-policy check (its own test pins it)."""


def _grant(method: str, path: str, content_type: str | None) -> set[Grant]:
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    if rest[0] == "namespaces" and len(rest) <= 2:
        resource, named = "namespaces", len(rest) == 2
    elif rest[0] != "namespaces":  # another cluster-scoped kind (a GatewayClass)
        resource, named = rest[0], len(rest) > 1
    else:
        resource, named = rest[2], len(rest) > 3
        if len(rest) == 5:  # a subresource: .../NAME/status
            resource = f"{resource}/{rest[4]}"
    verbs = {"GET": {"get" if named else "list"}, "POST": {"create"}, "DELETE": {"delete"},
             "PATCH": {"patch", "create"} if content_type == APPLY_CONTENT_TYPE else {"patch"}}[method]
    return {(group, resource, verb) for verb in verbs}


def _primed(kube: Kube) -> WatchCache:
    cache = WatchCache(kube)
    cache.mark_primed()
    return cache


def _owned(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    obj["metadata"]["uid"] = uid
    return obj


async def _every_adapter_call() -> set[Grant]:
    """Drive each Kubernetes adapter path once over a recording transport."""
    kube, t = fake_kube(FakeTransport())
    cluster = KubeCluster(kube, instance="t")
    spec = make_spec()
    canary = CANARY.model_copy(update={"hash": revision_hash(spec)})
    await cluster.apply_revision(OWNER, spec, canary, Role.CANARY, 2)
    await cluster.apply_revision(OWNER, spec, STABLE, Role.STABLE, 2)  # reads the stable template first
    stable_path = f"/apis/apps/v1/namespaces/ml/deployments/{objects.deployment_name(OWNER.name, STABLE.hash)}"
    lagging = _owned(t.objects[stable_path], "dep-1")
    lagging["status"] = {"readyReplicas": 0}
    t.lists["/apis/apps/v1/namespaces/ml/deployments"] = [lagging]
    t.lists["/apis/apps/v1/namespaces/ml/replicasets"] = [
        {"metadata": {"uid": "rs-1", "ownerReferences": [{"controller": True, "uid": "dep-1"}]}}]
    t.lists["/api/v1/namespaces/ml/pods"] = []
    await cluster.revision_states(OWNER)
    await cluster.ready_pod_ips(OWNER, STABLE.hash)
    await cluster.delete_revision(OWNER, STABLE.hash)
    await cluster.emit_event(OWNER, EventType.NORMAL, "Test", "m")
    routers: list[dict[str, Any]] = [{"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}, {"istio": {}}, {"none": {}}]
    for traffic in routers:
        routed = make_spec(traffic=traffic)
        router = router_for(routed.traffic, kube)
        await router.apply(OWNER, routed, SetTraffic(STABLE, CANARY, 20, 0))
        await router.observe(OWNER, routed)
        await router.cleanup(OWNER)
    comparing = KubeCluster(kube, instance="t", cache=_primed(kube))
    await comparing.apply_comparator(OWNER, EnsureComparator(CANARY, CompareSpec(), 100, 60))
    await comparing.remove_comparator(OWNER)
    writes = ModelDeploymentWrites(kube)
    md_path = f"/apis/modelship.dev/v1alpha1/namespaces/ml/modeldeployments/{OWNER.name}"
    t.objects[md_path] = {"metadata": {"name": OWNER.name}}
    t.objects[md_path + "/status"] = {"metadata": {"name": OWNER.name}}
    await writes.set_finalizers("ml", OWNER.name, "1", ["modelship.dev/finalizer"])
    await writes.patch_status("ml", OWNER.name, "1", {"phase": "Healthy"})
    await writes.read("ml", OWNER.name)
    metrics = PrometheusMetrics(MetricsSources(MetricsSettings(prometheus=PrometheusSettings(url="http://p"))), kube)
    await metrics._read_annotations("ml")
    gateway = "/apis/gateway.networking.k8s.io/v1/namespaces/gateways/gateways/gw"
    t.objects[gateway] = {"spec": {"gatewayClassName": "traefik"}}
    await GatewaySupportReader(kube).read([ParentRef(name="gw", namespace="gateways")], "ml")
    with contextlib.suppress(DeliveryError):  # not there: the grant is measured all the same
        await read_secret(kube, "ml", SecretKeyRef(key="url"), "notifications[t].webhook.url")
    return set().union(*(_grant(c.method, c.path, c.content_type) for c in t.calls))


def _rules(block: str) -> set[Grant]:
    text = HELPERS.read_text()
    match = re.search(r'\{\{- define "modelship\.' + block + r'" -\}\}\n(.*?)\{\{- end \}\}\n\n', text, re.S)
    assert match, f"no define {block} in {HELPERS}"
    body = "\n".join(line.replace("{{ toJson . }}", "[named]") for line in match.group(1).splitlines()
                     if not line.lstrip().startswith("{{"))
    grants: set[Grant] = set()
    for rule in yaml.safe_load(body):
        if OTHER_CLUSTER_RULES & set(rule["resources"]):
            continue
        grants |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return grants


async def test_the_chart_grants_exactly_what_the_code_and_kopf_use() -> None:
    """Given every adapter path and kopf's documented needs, the chart's namespaced rules are exactly those
    (nothing missing, no `update`, no events `patch`, no pod `watch`), and the cluster-wide rules are the
    Namespace read plus kopf's CRD discovery; namespace scanning only in namespaced mode."""
    used = await _every_adapter_call()
    namespaced = {g for g in used if g[1] not in ("namespaces", "secrets", *GATEWAY_READS)} | KOPF | WATCHES | BIND
    assert _rules("namespacedRules") == namespaced
    assert _rules("notificationRules") == {g for g in used if g[1] == "secrets"} == {("", "secrets", "get")}
    assert "resourceNames: {{ toJson . }}" in HELPERS.read_text()  # only the Secrets named in the values
    assert _rules("clusterRules") == {g for g in used if g[1] in ("namespaces", *GATEWAY_READS)} | KOPF_CLUSTER
    assert _rules("namespaceScanRules") == KOPF_NAMESPACE_SCAN
    assert not {g for g in namespaced if g[2] == "update"}


def test_install_doc_table_matches_the_chart() -> None:
    """docs/install.md's "What the RBAC grants" table lists the same groups, resources and verbs."""
    documented: set[Grant] = set()
    for line in INSTALL.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`"):
            continue
        groups = ["" if g.strip() == "core" else g.strip().strip("`") for g in cells[0].split(",")]
        resources = [r.strip().strip("`") for r in cells[1].split(",")]
        verbs = [v.strip() for v in cells[2].split(",")]
        documented |= {(g, r, v) for g in groups for r in resources for v in verbs}
    assert documented == _rules("namespacedRules")
