"""Traffic routers: weights always sum to 100, mirror shapes, drift detection, replica split invariants."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from adapter_fixtures import CANARY, OWNER, STABLE, fake_kube, make_spec
from hypothesis import given
from hypothesis import strategies as st
from modelship.adapters.routers import gateway_api, istio, replica_ratio
from modelship.adapters.routers.base import in_sync, is_subset
from modelship.adapters.routers.factory import RouterFactory, router_for, stale_routers
from modelship.domain.actions import SetTraffic
from modelship.domain.api import GatewayApiRouter, IstioRouter

GW = GatewayApiRouter.model_validate({
    "parentRefs": [{"name": "inference-gw", "namespace": "gateways", "sectionName": "http"}],
    "hostnames": ["a.example.com"],
})
IS = IstioRouter(gateways=["gateways/inference-gw"], hosts=["fraud.example.com"])
weights = st.integers(min_value=0, max_value=100)


def _action(weight: int, mirror: int = 0, canary: bool = True) -> SetTraffic:
    return SetTraffic(stable=STABLE, canary=CANARY if canary else None, canary_weight=weight,
                      mirror_percent=mirror)


@given(weights, weights, st.booleans(), st.sampled_from(["RequestMirror", "External"]))
def test_httproute_weights_sum_to_100_and_round_trip(weight: int, mirror: int, canary: bool, mode: str) -> None:
    """In both mirror modes; with External (a gateway without HTTPRouteRequestMirror: Traefik answers 500 to a
    rule with the filter) live routing carries no filter and the mirror round-trips through the annotation."""
    config = GatewayApiRouter.model_validate({**GW.model_dump(by_alias=True), "mirror": mode})
    route = gateway_api.desired_route(OWNER, config, _action(weight, mirror, canary))
    (rule,) = route["spec"]["rules"]
    assert mode == "RequestMirror" or "filters" not in rule
    assert sum(b["weight"] for b in rule["backendRefs"]) == 100
    assert len(rule["backendRefs"]) == (2 if canary else 1)
    state = gateway_api.route_state(OWNER, route)
    assert state.canary_weight == (weight if canary else 0)
    assert state.mirror_percent == (mirror if canary else 0)


@given(weights, weights, st.booleans())
def test_virtualservice_weights_sum_to_100_and_round_trip(weight: int, mirror: int, canary: bool) -> None:
    vs = istio.desired_virtual_service(OWNER, IS, _action(weight, mirror, canary))
    (http,) = vs["spec"]["http"]
    assert sum(r["weight"] for r in http["route"]) == 100
    state = istio.route_state(OWNER, vs)
    assert state.canary_weight == (weight if canary else 0)
    assert state.mirror_percent == (mirror if canary else 0)


def test_httproute_shape_with_partial_mirror() -> None:
    route = gateway_api.desired_route(OWNER, GW, _action(25, 40))
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["name"] == "fraud-scorer"
    assert route["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert route["metadata"]["annotations"] == {"modelship.dev/stable-revision": STABLE.hash,
                                                "modelship.dev/canary-revision": CANARY.hash}
    spec = route["spec"]
    assert spec["parentRefs"] == [{"name": "inference-gw", "namespace": "gateways", "sectionName": "http"}]
    assert spec["hostnames"] == ["a.example.com"]
    assert spec["rules"] == [{
        "backendRefs": [{"name": "fraud-scorer-stable", "port": 8000, "weight": 75},
                        {"name": "fraud-scorer-canary", "port": 8000, "weight": 25}],
        "filters": [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "fraud-scorer-canary", "port": 8000}, "percent": 40}}],
    }]


def test_full_mirror_omits_experimental_percent_and_no_mirror_omits_filter() -> None:
    full = gateway_api.desired_route(OWNER, GW, _action(0, 100))["spec"]["rules"][0]
    mirror_to = {"backendRef": {"name": "fraud-scorer-canary", "port": 8000}}
    assert full["filters"][0]["requestMirror"] == mirror_to
    none = gateway_api.desired_route(OWNER, GW, _action(10, 0))["spec"]["rules"][0]
    assert "filters" not in none


EXTERNAL = GatewayApiRouter.model_validate({**GW.model_dump(by_alias=True), "mirror": "External"})


def test_external_mirror_annotation_shape_and_empty_when_not_mirroring() -> None:
    partial = gateway_api.desired_route(OWNER, EXTERNAL, _action(0, 40))
    assert json.loads(partial["metadata"]["annotations"]["modelship.dev/mirror"]) == {
        "backendRef": {"name": "fraud-scorer-canary", "port": 8000}, "percent": 40}
    full = gateway_api.desired_route(OWNER, EXTERNAL, _action(0, 100))
    assert json.loads(full["metadata"]["annotations"]["modelship.dev/mirror"]) == {
        "backendRef": {"name": "fraud-scorer-canary", "port": 8000}}
    # "" (not absent) once the copy stops, so the drift check sees a hand-added copy as a difference
    none = gateway_api.desired_route(OWNER, EXTERNAL, _action(10, 0))
    assert none["metadata"]["annotations"]["modelship.dev/mirror"] == ""
    assert not in_sync(none, partial)


def test_external_mirror_annotation_that_is_not_json_reads_as_no_mirror() -> None:
    route = gateway_api.desired_route(OWNER, EXTERNAL, _action(0, 100))
    route["metadata"]["annotations"]["modelship.dev/mirror"] = "{not json"
    assert gateway_api.route_state(OWNER, route).mirror_percent == 0


def test_mirror_mode_is_validated_with_the_field_named() -> None:
    with pytest.raises(ValueError, match="mirror"):
        GatewayApiRouter.model_validate({"parentRefs": [{"name": "gw"}], "mirror": "Sidecar"})


def test_virtualservice_shape() -> None:
    vs = istio.desired_virtual_service(OWNER, IS, _action(5, 50))
    assert vs["apiVersion"] == "networking.istio.io/v1"
    assert vs["spec"]["hosts"] == ["fraud.example.com"]
    assert vs["spec"]["gateways"] == ["gateways/inference-gw"]
    (http,) = vs["spec"]["http"]
    stable_host = "fraud-scorer-stable.ml.svc.cluster.local"
    canary_host = "fraud-scorer-canary.ml.svc.cluster.local"
    assert http["route"] == [
        {"destination": {"host": stable_host, "port": {"number": 8000}}, "weight": 95},
        {"destination": {"host": canary_host, "port": {"number": 8000}}, "weight": 5},
    ]
    assert http["mirror"] == {"host": canary_host, "port": {"number": 8000}}
    assert http["mirrorPercentage"] == {"value": 50.0}
    default_hosts = istio.desired_virtual_service(OWNER, IstioRouter(), _action(0))["spec"]
    assert default_hosts["hosts"] == ["fraud-scorer"]
    assert "gateways" not in default_hosts


def _server_view(route: dict[str, Any]) -> dict[str, Any]:
    """What the API server returns: our fields plus defaults and metadata it adds."""
    found = copy.deepcopy(route)
    found["metadata"].update(resourceVersion="42", uid="abc", managedFields=[])
    for ref in found["spec"]["rules"][0]["backendRefs"]:
        ref.update(group="", kind="Service")
    found["spec"]["rules"][0]["matches"] = [{"path": {"type": "PathPrefix", "value": "/"}}]
    for parent in found["spec"]["parentRefs"]:
        parent.update(group="gateway.networking.k8s.io", kind="Gateway")
    found["status"] = {"parents": []}
    return found


def test_drift_detection_ignores_server_defaults_but_not_hand_edits() -> None:
    desired = gateway_api.desired_route(OWNER, GW, _action(25))
    found = _server_view(desired)
    assert in_sync(desired, found)
    edited = copy.deepcopy(found)
    edited["spec"]["rules"][0]["backendRefs"][1]["weight"] = 90
    assert not in_sync(desired, edited)
    extra = copy.deepcopy(found)
    extra["spec"]["rules"][0]["backendRefs"].append({"name": "someone-else", "port": 80})
    assert not in_sync(desired, extra)
    promoted = SetTraffic(stable=CANARY, canary=None, canary_weight=0, mirror_percent=0)
    other_revision = gateway_api.desired_route(OWNER, GW, promoted)
    assert not in_sync(other_revision, found)
    assert not in_sync(desired, None)
    assert is_subset({"value": 50}, {"value": 50.0})
    assert not is_subset({"on": True}, {"on": 1})


async def test_gateway_apply_restores_a_hand_edit_and_reports_drift() -> None:
    kube, t = fake_kube()
    router = router_for(make_spec().traffic, kube)
    first = await router.apply(OWNER, make_spec(), _action(25, 0))
    assert first.exists is False and first.in_sync is False
    route_path = "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes/fraud-scorer"
    assert route_path in t.objects
    assert "/api/v1/namespaces/ml/services/fraud-scorer-canary" in t.objects
    assert "/api/v1/namespaces/ml/services/fraud-scorer" in t.objects

    t.calls.clear()
    steady = await router.apply(OWNER, make_spec(), _action(25, 0))
    assert steady.in_sync is True and steady.canary_weight == 25
    assert t.writes() == []  # steady state: one GET, no writes

    t.objects[route_path]["spec"]["rules"][0]["backendRefs"][0]["weight"] = 10  # someone kubectl-edits
    restored = await router.apply(OWNER, make_spec(), _action(25, 0))
    assert restored.in_sync is False
    assert t.objects[route_path]["spec"]["rules"][0]["backendRefs"][0]["weight"] == 75


async def test_istio_apply_and_cleanup() -> None:
    kube, t = fake_kube()
    spec = make_spec(traffic={"istio": {"hosts": ["fraud.example.com"]}})
    router = RouterFactory(kube)(spec)
    state = await router.apply(OWNER, spec, _action(50, 0))
    assert state.exists is False
    path = "/apis/networking.istio.io/v1/namespaces/ml/virtualservices/fraud-scorer"
    assert t.objects[path]["spec"]["http"][0]["route"][1]["weight"] == 50
    observed = await router.observe(OWNER, spec)
    assert observed.canary_weight == 50 and observed.mirror_percent == 0
    await router.cleanup(OWNER)
    assert path not in t.objects
    await router.cleanup(OWNER)  # already gone: fine


def test_stale_routers_are_the_other_kinds() -> None:
    kube, _ = fake_kube()
    stale = stale_routers(make_spec(traffic={"none": {}}).traffic, kube)
    assert {type(r).__name__ for r in stale} == {"GatewayApiRouterAdapter", "IstioRouterAdapter"}
    chosen = router_for(make_spec(traffic={"none": {}}).traffic, kube)
    assert isinstance(chosen, replica_ratio.ReplicaRatioRouter)


@given(st.integers(min_value=1, max_value=1000), weights)
def test_split_replicas_invariants(total: int, weight: int) -> None:
    stable, canary = replica_ratio.split_replicas(total, weight)
    assert stable >= 0 and canary >= 0
    if weight < 100:
        assert stable >= 1
    else:
        assert stable == 0
    if weight > 0:
        assert canary >= 1
    else:
        assert canary == 0
    if total >= 2 or weight in (0, 100):
        assert stable + canary == total
    else:
        assert (stable, canary) == (1, 1)
    # never further from the asked weight than one pod's worth (unless a side was forced to keep a pod)
    if total >= 2 and 0 < weight < 100 and 1 < canary < total - 1:
        assert abs(100 * canary / total - weight) <= 100 / total / 2 + 1e-9


@given(st.integers(min_value=1, max_value=200), weights, weights)
def test_split_replicas_is_monotone_in_weight(total: int, a: int, b: int) -> None:
    low, high = sorted((a, b))
    assert replica_ratio.split_replicas(total, low)[1] <= replica_ratio.split_replicas(total, high)[1]


def test_effective_weight_and_shadow_refused_in_replica_mode() -> None:
    assert replica_ratio.effective_weight(3, 1) == 25
    assert replica_ratio.effective_weight(0, 0) is None
    shadow = make_spec(traffic={"none": {}}, rollout={"shadow": {"duration": "5m"}})
    (problem,) = replica_ratio.validation_problems(shadow)
    assert problem.startswith("rollout.shadow")
    assert replica_ratio.validation_problems(make_spec(rollout={"shadow": {"duration": "5m"}})) == ()


@pytest.mark.parametrize(("ready", "expected"), [((3, 1), 25), ((4, 0), 0)])
async def test_replica_router_reports_effective_weight(ready: tuple[int, int], expected: int) -> None:
    kube, t = fake_kube()
    deps = [
        {"metadata": {"name": f"fraud-scorer-{rev.hash}", "labels": {"modelship.dev/revision": rev.hash,
                                                                       "modelship.dev/role": role},
                      "ownerReferences": [{"uid": OWNER.uid, "controller": True}]},
         "status": {"readyReplicas": n}}
        for rev, role, n in ((STABLE, "stable", ready[0]), (CANARY, "canary", ready[1]))
    ]
    t.lists["/apis/apps/v1/namespaces/ml/deployments"] = deps
    spec = make_spec(traffic={"none": {}})
    router = router_for(spec.traffic, kube)
    state = await router.apply(OWNER, spec, _action(25))
    assert state.canary_weight == expected and state.mirror_percent == 0 and state.in_sync
    assert (await router.observe(OWNER, spec)).canary_weight == expected
    assert "/api/v1/namespaces/ml/services/fraud-scorer" in t.objects
    await router.cleanup(OWNER)


@pytest.mark.parametrize(
    ("weight", "canary", "selects_only_stable"),
    [(0, True, True), (0, False, True), (25, True, False)],
    ids=["validating-or-shadow", "no-canary", "live-canary-step"],
)
async def test_entry_service_keeps_a_canary_without_live_weight_out(
    weight: int, canary: bool, selects_only_stable: bool
) -> None:
    """Given a replica-ratio deployment, when the canary has no live weight (validating, shadow, rolled back),
    then the shared Service selects only stable pods; once a canary step starts it selects both revisions."""
    kube, t = fake_kube()
    t.lists["/apis/apps/v1/namespaces/ml/deployments"] = []
    spec = make_spec(traffic={"none": {}})
    await router_for(spec.traffic, kube).apply(OWNER, spec, _action(weight, canary=canary))
    selector = t.objects["/api/v1/namespaces/ml/services/fraud-scorer"]["spec"]["selector"]
    if selects_only_stable:
        assert selector == {"modelship.dev/deployment": "fraud-scorer", "modelship.dev/revision": STABLE.hash}
    else:
        assert selector == {"modelship.dev/deployment": "fraud-scorer", "app.kubernetes.io/name": "fraud-scorer"}
