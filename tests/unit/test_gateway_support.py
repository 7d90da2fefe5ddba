"""A RequestMirror on a Gateway whose class says it cannot mirror is refused (Invalid, named field, nothing applied):
Traefik 3.6 answers 500 to every request of a rule with the filter, so a Shadow stage would take stable down."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from adapter_fixtures import FakeTransport, fake_kube, make_spec
from modelship.adapters.gateway_support import GatewaySupportReader
from modelship.adapters.kube import KubeError
from modelship.adapters.telemetry import Telemetry
from modelship.controller.clock import ManualClock
from modelship.controller.reconciler import Reconciler
from modelship.domain.api import ParentRef
from modelship.domain.gateway_support import MIRROR, PARTIAL_MIRROR, GatewaySupport, mirror_problems
from test_reconciler import SPEC, FakeCluster, FakeRouters, NoMetrics, PassingChecks, body

GATEWAY = "/apis/gateway.networking.k8s.io/v1/namespaces/gateways/gateways/inference-gw"
CLASS = "/apis/gateway.networking.k8s.io/v1/gatewayclasses/traefik"
TRAEFIK = frozenset({"Gateway", "HTTPRoute", "HTTPRouteQueryParamMatching"})
MIRRORING = frozenset({"Gateway", "HTTPRoute", MIRROR, PARTIAL_MIRROR})
SHADOW = {"canary": {"steps": [{"weight": 20, "duration": "1m"}]}, "shadow": {"duration": "5m"}}


def _spec(mirror: str = "RequestMirror", shadow: dict[str, Any] | None = None, with_shadow: bool = True) -> Any:
    rollout: dict[str, Any] = {"canary": SHADOW["canary"]}
    if with_shadow:
        rollout["shadow"] = shadow or SHADOW["shadow"]
    return make_spec(traffic={"gatewayAPI": {"parentRefs": [{"name": "inference-gw", "namespace": "gateways"}],
                                             "mirror": mirror}}, rollout=rollout)


def _support(features: frozenset[str] | None) -> list[GatewaySupport]:
    return [GatewaySupport("gateways/inference-gw", "traefik", features)]


@pytest.mark.parametrize(("spec", "features", "refused"), [
    (_spec(), TRAEFIK, True),                                       # the Traefik case
    (_spec(), MIRRORING, False),                                    # a gateway that mirrors
    (_spec(), None, False),                                         # the class says nothing: not judged
    (_spec(mirror="External"), TRAEFIK, False),                     # no filter is written
    (_spec(with_shadow=False), TRAEFIK, False),                     # no Shadow stage, no mirror
    (_spec(shadow={"duration": "5m", "mirrorPercent": 40}), frozenset({MIRROR}), True),  # partial needs more
])  # fmt: skip
def test_a_mirror_is_refused_only_where_the_class_says_it_cannot_make_it(
    spec: Any, features: frozenset[str] | None, refused: bool
) -> None:
    problems = mirror_problems(spec, _support(features))
    assert bool(problems) is refused, problems
    for problem in problems:
        assert problem.startswith("spec.traffic.gatewayAPI.mirror: Gateway gateways/inference-gw (GatewayClass traefik")
        assert "mirror: External" in problem


def test_the_partial_mirror_feature_is_named_when_it_is_the_one_missing() -> None:
    (problem,) = mirror_problems(_spec(shadow={"duration": "5m", "mirrorPercent": 40}), _support(frozenset({MIRROR})))
    assert PARTIAL_MIRROR in problem and f"{MIRROR} and" not in problem


def _transport(features: list[str] | None) -> FakeTransport:
    status = {"supportedFeatures": [{"name": f} for f in features]} if features is not None else {}
    return FakeTransport(objects={GATEWAY: {"spec": {"gatewayClassName": "traefik"}}, CLASS: {"status": status}})


async def test_the_reader_follows_the_gateway_to_its_class_and_caches_the_answer() -> None:
    kube, transport = fake_kube(_transport(["HTTPRoute", "Gateway"]))
    now = [0.0]
    reader = GatewaySupportReader(kube, ttl_s=60, monotonic=lambda: now[0])
    refs = [ParentRef(name="inference-gw", namespace="gateways")]
    (support,) = await reader.read(refs, "ml")
    assert support == GatewaySupport("gateways/inference-gw", "traefik", frozenset({"HTTPRoute", "Gateway"}))
    await reader.read(refs, "ml")
    assert [c.path for c in transport.calls] == [GATEWAY, CLASS], "the second read comes from the cache"
    now[0] = 61.0
    await reader.read(refs, "ml")
    assert len(transport.calls) == 4, "read again once the entry expired"


async def test_a_missing_gateway_a_silent_class_or_no_rbac_is_not_judged() -> None:
    missing = GatewaySupportReader(fake_kube(FakeTransport())[0])
    assert (await missing.read([ParentRef(name="gw")], "ml"))[0] == GatewaySupport("ml/gw", "", None)
    silent = GatewaySupportReader(fake_kube(_transport(None))[0])
    assert (await silent.read([ParentRef(name="inference-gw", namespace="gateways")], "ml"))[0].features is None

    class Forbidden(FakeTransport):
        def request(self, method: str, path: str, **kwargs: Any) -> Any:
            raise KubeError(403, "Forbidden", "cannot get gateways")

    forbidden = GatewaySupportReader(fake_kube(Forbidden())[0])
    assert (await forbidden.read([ParentRef(name="gw")], "ml"))[0].features is None


async def test_a_shadow_on_a_gateway_that_cannot_mirror_is_invalid_and_nothing_is_applied() -> None:
    """Given a new ModelDeployment with a Shadow stage on a Traefik Gateway, when reconciled, then it is Invalid
    naming spec.traffic.gatewayAPI.mirror and the fix, and no revision or route is written."""
    kube, _ = fake_kube(_transport(sorted(TRAEFIK)))
    cluster, routers = FakeCluster(), FakeRouters()
    rec = Reconciler(cluster, routers, NoMetrics(), PassingChecks(), ManualClock(datetime(2026, 12, 3, tzinfo=UTC)),
                     Telemetry(), gateway_supports=GatewaySupportReader(kube))  # fmt: skip
    spec = {**SPEC, "traffic": {"gatewayAPI": {"parentRefs": [{"name": "inference-gw", "namespace": "gateways"}]}},
            "rollout": SHADOW}  # fmt: skip
    result = await rec.reconcile(body(spec))
    assert result.status["phase"] == "Invalid"
    assert "spec.traffic.gatewayAPI.mirror" in result.status["message"] and "External" in result.status["message"]
    assert not [c for c in cluster.calls if c.startswith("apply")] and not routers.log
    external = {**spec, "traffic": {"gatewayAPI": {**spec["traffic"]["gatewayAPI"], "mirror": "External"}}}
    assert (await rec.reconcile(body(external))).status["phase"] != "Invalid"
