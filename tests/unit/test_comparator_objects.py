"""The operator runs the comparator: actions in the right order, least-privilege objects, the mirror pointed at
it, and nothing written when nothing changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from adapter_fixtures import CANARY, OWNER, STABLE, fake_kube
from engine_fixtures import good, rolled_out, traffic
from modelship.adapters import comparator_objects as objects
from modelship.adapters.cache import ApiCache, WatchCache
from modelship.adapters.kube import KubeError
from modelship.adapters.routers import gateway_api, istio
from modelship.domain.actions import EnsureComparator, RemoveComparator, SetTraffic
from modelship.domain.api import GatewayApiRouter, IstioRouter
from modelship.domain.compare_spec import CompareSpec
from modelship.domain.engine import Decision
from modelship.domain.status import Stage

COMPARE = CompareSpec.model_validate({"relative": 0.01, "outputs": [{"name": "score", "mode": "Argmax"}]})
ENSURE = EnsureComparator(canary=CANARY, compare=COMPARE, sample_percent=50, window_seconds=60)


def kinds(decision: Decision) -> list[str]:
    return [type(action).__name__ for action in decision.actions if type(action).__name__ != "EmitEvent"]


# --- what the engine asks for ------------------------------------------------------------------------------


def test_in_shadow_the_comparator_runs_before_the_mirror_points_at_it_and_goes_after_it_left() -> None:
    sim = rolled_out(shadow={"mirrorPercent": 50, "duration": "2m", "compare": {"samplePercent": 20}})
    sim.decide(validation=None)
    shadow = sim.decide()
    assert shadow.status.stage == Stage.SHADOW
    order = kinds(shadow)
    assert order.index("EnsureComparator") < order.index("SetTraffic")
    ensure = next(a for a in shadow.actions if isinstance(a, EnsureComparator))
    assert (ensure.canary, ensure.sample_percent, ensure.window_seconds) == (shadow.status.canary_revision, 20, 60)
    assert traffic(shadow)[-1].compared and traffic(shadow)[-1].mirror_percent == 50
    canary = sim.run_checks(2)
    assert canary.status.stage == Stage.CANARY
    order = kinds(canary)
    assert "EnsureComparator" not in order and order.index("RemoveComparator") > order.index("SetTraffic")
    assert not traffic(canary)[-1].compared and traffic(canary)[-1].mirror_percent == 0


def test_with_a_canary_sample_the_route_mirrors_everything_to_the_comparator_through_the_steps() -> None:
    sim = rolled_out(shadow={"duration": "2m", "compare": {"canarySamplePercent": 5}})
    sim.decide(validation=None)
    sim.decide()
    canary = sim.run_checks(2, good())
    assert canary.status.stage == Stage.CANARY and canary.status.mirror_percent == 100
    ensure = next(a for a in canary.actions if isinstance(a, EnsureComparator))
    assert ensure.sample_percent == 5 and traffic(canary)[-1].compared


def test_with_comparison_off_the_mirror_goes_to_the_canary_and_no_comparator_runs() -> None:
    sim = rolled_out(shadow={"duration": "2m", "compare": {"enabled": False}})
    sim.decide(validation=None)
    shadow = sim.decide()
    assert shadow.status.stage == Stage.SHADOW and "EnsureComparator" not in kinds(shadow)
    assert not traffic(shadow)[-1].compared and traffic(shadow)[-1].mirror_percent == 100


def test_a_settled_object_only_asks_for_no_comparator() -> None:
    sim = rolled_out()
    assert [a for a in sim.last.actions if isinstance(a, EnsureComparator)] == []  # type: ignore[union-attr]
    assert any(isinstance(a, RemoveComparator) for a in sim.last.actions)  # type: ignore[union-attr]


# --- the objects -------------------------------------------------------------------------------------------


def test_the_comparator_deployment_runs_modelship_compare_without_gpu_as_non_root() -> None:
    deployment = objects.deployment(OWNER, ENSURE, "registry/modelship:1")
    pod = deployment["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert deployment["metadata"]["name"] == "fraud-scorer-comparator" and deployment["spec"]["replicas"] == 1
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert pod["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "modelship", "modelship.dev/deployment": "fraud-scorer",
        "modelship.dev/role": "comparator", "modelship.dev/compared-revision": CANARY.hash,
    }
    assert container["command"] == ["modelship", "compare"]
    assert container["args"][:8] == ["--namespace", "ml", "--deployment", "fraud-scorer", "--sample-percent", "50",
                                     "--window-s", "60"]
    assert json.loads(container["env"][0]["value"])["outputs"][0] == {
        "name": "score", "mode": "Argmax", "k": 5, "absolute": None, "relative": None}
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    assert [p["name"] for p in container["ports"]] == ["http", "metrics"]
    assert pod["spec"]["serviceAccountName"] == "fraud-scorer-comparator"


def test_its_service_account_may_only_list_endpoint_slices() -> None:
    binding = objects.role_binding(OWNER)
    assert binding["roleRef"]["name"] == "modelship-comparator"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fraud-scorer-comparator", "namespace": "ml"}]
    assert objects.cluster_role()["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}]


def _compared(mirror: int = 100) -> SetTraffic:
    return SetTraffic(stable=STABLE, canary=CANARY, canary_weight=0, mirror_percent=mirror, compared=True)


def test_routes_mirror_to_the_comparator_while_comparing() -> None:
    route = gateway_api.desired_route(OWNER, GatewayApiRouter.model_validate({"parentRefs": [{"name": "gw"}]}),
                                      _compared(30))
    mirror = route["spec"]["rules"][0]["filters"][0]["requestMirror"]
    assert mirror == {"backendRef": {"name": "fraud-scorer-comparator", "port": 8000}, "percent": 30}
    assert gateway_api.route_state(OWNER, route).mirror_percent == 30
    service = istio.desired_virtual_service(OWNER, IstioRouter(hosts=["fraud.example.com"]), _compared())
    assert service["spec"]["http"][0]["mirror"]["host"] == "fraud-scorer-comparator.ml.svc.cluster.local"


# --- running and removing it ------------------------------------------------------------------------------


async def test_apply_writes_identity_service_and_deployment_once_and_remove_deletes_them() -> None:
    kube, transport = fake_kube()
    cache = WatchCache(kube)
    cache.mark_primed()
    comparators = objects.Comparators(kube, cache, "registry/modelship:1")
    await comparators.apply(OWNER, ENSURE)
    written = [(c.method, c.path.rsplit("/", 2)[-2]) for c in transport.writes()]
    assert written == [("PATCH", "serviceaccounts"), ("PATCH", "rolebindings"), ("PATCH", "services"),
                       ("PATCH", "deployments")]
    transport.calls.clear()
    await comparators.apply(OWNER, ENSURE)
    assert transport.writes() == [], "an unchanged comparator sends nothing"
    await comparators.apply(OWNER, EnsureComparator(canary=STABLE, compare=COMPARE, sample_percent=50,
                                                    window_seconds=60))
    assert [c.path.rsplit("/", 2)[-2] for c in transport.writes()] == [
        "serviceaccounts", "rolebindings", "deployments"]
    transport.calls.clear()
    await comparators.remove(OWNER)
    deleted = [c.path.rsplit("/", 2)[-2] for c in transport.writes() if c.method == "DELETE"]
    assert deleted == ["deployments", "services", "rolebindings", "serviceaccounts"]
    transport.calls.clear()
    await comparators.remove(OWNER)
    assert transport.calls == [], "with no comparator nothing is sent"


async def test_a_foreign_object_of_the_comparator_name_is_never_taken_over() -> None:
    kube, transport = fake_kube()
    foreign: dict[str, Any] = {"apiVersion": "v1", "kind": "Service",
                               "metadata": {"name": "fraud-scorer-comparator", "namespace": "ml", "uid": "x"}}
    transport.objects["/api/v1/namespaces/ml/services/fraud-scorer-comparator"] = foreign
    comparators = objects.Comparators(kube, ApiCache(kube), "registry/modelship:1")
    with pytest.raises(KubeError, match="Service ml/fraud-scorer-comparator exists and is not controlled"):
        await comparators.apply(OWNER, ENSURE)
    assert transport.writes() == []


def test_the_shared_entry_service_never_selects_the_comparator_pod() -> None:
    from modelship.adapters.objects import entry_service, pod_labels  # noqa: PLC0415

    selector = entry_service(OWNER)["spec"]["selector"]
    comparator_pod = objects.deployment(OWNER, ENSURE, "img")["spec"]["template"]["metadata"]["labels"]
    triton_pod = pod_labels(OWNER.name, STABLE)
    assert all(triton_pod.get(k) == v for k, v in selector.items())
    assert not all(comparator_pod.get(k) == v for k, v in selector.items())


def test_in_the_post_promotion_window_the_comparator_is_told_which_side_is_which() -> None:
    after = EnsureComparator(canary=CANARY, compare=CompareSpec(), sample_percent=20, window_seconds=60,
                             after_promotion=True)
    args = objects.deployment(OWNER, after, "registry/modelship:1")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[-1] == "--after-promotion"
    assert "--after-promotion" not in objects.deployment(OWNER, ENSURE, "i")["spec"]["template"]["spec"][
        "containers"][0]["args"]
