"""The stack's real gateway (Traefik, e2e/stack/dataplane/gateway.py) on the real local stack: it is up by default,
its weighted split matches the HTTPRoute's weights within sampling error, failures are attributed to the pod it
chose, and its one gap (no RequestMirror) is pinned so that a Traefik that learns it is noticed."""

from __future__ import annotations

import json
import math
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_dataplane import _pod_manifest, _ready_pod, eventually

from e2e.stack.routes import MIRROR_ANNOTATION, STACK_GATEWAY, RouteReader
from e2e.stack.traffic import TrafficGenerator

GROUP, VERSION = "gateway.networking.k8s.io", "v1"
NAME = "fraud-scorer"
SIGMAS = 4.0
"""A split is wrong when it is further than 4 binomial standard deviations from the weight (p ~ 6e-5 by chance)."""


def _custom(stack: Any) -> Any:
    from kubernetes import client  # noqa: PLC0415

    return client.CustomObjectsApi(stack.api_client())


def _route(ns: str, stable: int, canary: int, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "HTTPRoute",
        "metadata": {"name": NAME, "labels": {"modelship.dev/deployment": NAME}, **extra.pop("metadata", {})},
        "spec": {
            "parentRefs": [{"name": STACK_GATEWAY[1], "namespace": STACK_GATEWAY[0]}],
            "hostnames": [f"{NAME}.{ns}.models.test"],
            "rules": [{"backendRefs": [{"name": f"{NAME}-stable", "port": 8000, "weight": stable},
                                       {"name": f"{NAME}-canary", "port": 8000, "weight": canary}], **extra}],
        },
    }  # fmt: skip


def _programmed(custom: Any, ns: str) -> bool:
    """Traefik has loaded this generation of the route: its status names the generation and accepts it."""
    route = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "httproutes", NAME)
    conditions = [c for p in route.get("status", {}).get("parents", []) for c in p.get("conditions", [])]
    generation = route["metadata"]["generation"]
    return any(c["type"] == "Accepted" and c["status"] == "True" and c.get("observedGeneration") == generation
               for c in conditions)  # fmt: skip


def _applied(stack: Any, ns: str, children: dict[str, int]) -> bool:
    """Traefik's running configuration (its API) routes this route by `children` (a backend name part -> weight):
    the route's status is written before the configuration is applied, which can lag it by seconds under load."""
    with urllib.request.urlopen(f"{stack.state['gateway_api']}/http/services", timeout=5) as response:
        services = json.load(response)
    for service in services:
        if not service["name"].startswith(f"httproute-{ns}-{NAME}-"):
            continue
        weighted = {c["name"]: c.get("weight", 1) for c in (service.get("weighted") or {}).get("services") or []}
        if weighted and all(any(part in name and weight == want for name, weight in weighted.items())
                            for part, want in children.items()) and len(weighted) == len(children):
            return True
    return False


def _replace_route(stack: Any, custom: Any, ns: str, body: dict[str, Any], children: dict[str, int]) -> None:
    current = custom.get_namespaced_custom_object(GROUP, VERSION, ns, "httproutes", NAME)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    custom.replace_namespaced_custom_object(GROUP, VERSION, ns, "httproutes", NAME, body)
    eventually(lambda: _programmed(custom, ns), 30, "Traefik to accept the new route")
    eventually(lambda: _applied(stack, ns, children), 30, f"Traefik to apply {children}")


def _generator(stack: Any, ns: str, **kw: Any) -> TrafficGenerator:
    env = stack.env
    return TrafficGenerator(reader=RouteReader(stack.api_client(), ns, NAME), gateway=env["MODELSHIP_GATEWAY_URL"],
                            access_log=Path(env["MODELSHIP_GATEWAY_ACCESS_LOG"]), **kw)  # fmt: skip


def _two_revisions(stack: Any, ns: str, **canary_env: str) -> Any:
    """Stable v2 and canary v3 pods behind their role Services and an HTTPRoute on the stack's Gateway (70/30)."""
    from kubernetes import client  # noqa: PLC0415

    core, custom = client.CoreV1Api(stack.api_client()), _custom(stack)
    for role, rev, version, env in (("stable", "rev2", 2, {}), ("canary", "rev3", 3, canary_env)):
        core.create_namespaced_pod(ns, _pod_manifest(f"{role}-0", rev, version, role, **env))
        core.create_namespaced_service(ns, {
            "metadata": {"name": f"{NAME}-{role}", "labels": {
                "app.kubernetes.io/managed-by": "modelship", "modelship.dev/deployment": NAME,
                "modelship.dev/role": role}},
            "spec": {"selector": {"modelship.dev/revision": rev},
                     "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]},
        })  # fmt: skip
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, "httproutes", _route(ns, 70, 30))
    _ready_pod(stack, ns, "stable-0"), _ready_pod(stack, ns, "canary-0")
    eventually(lambda: _programmed(custom, ns), 60, "Traefik to accept the HTTPRoute")

    def both_answer() -> bool:
        # Traefik learns each Service's ready endpoints on its own schedule: measure once both answer through it.
        backends = _generator(stack, ns, rps=40, count=40, duration=10).start().wait(20)["backends"]
        return all(backends.get(f"{NAME}-{role}", {}).get("sent", 0) > 0 for role in ("stable", "canary"))

    eventually(both_answer, 60, "both revisions answering through the gateway")
    return custom


def _share(backends: dict[str, Any], key: str) -> tuple[float, int]:
    total = sum(entry.get("sent", 0) for name, entry in backends.items() if not name.startswith("mirror:"))
    return backends.get(key, {}).get("sent", 0) / total, total


@pytest.mark.integration
def test_the_stack_runs_traefik_as_its_gateway_and_it_lacks_request_mirror(stack: Any) -> None:
    """Given the default stack, then Gateway gateways/inference-gw is programmed by Traefik, whose GatewayClass
    lists the features it supports: HTTPRouteRequestMirror is not one (when it is, drop `mirror: External`)."""
    custom = _custom(stack)
    assert stack.env["MODELSHIP_GATEWAY_URL"].startswith("127.0.0.1:")
    gateway = custom.get_namespaced_custom_object(GROUP, VERSION, STACK_GATEWAY[0], "gateways", STACK_GATEWAY[1])
    conditions = {c["type"]: c["status"] for c in gateway["status"]["conditions"]}
    assert conditions.get("Programmed") == "True", gateway["status"]
    class_name = gateway["spec"]["gatewayClassName"]
    gateway_class = custom.get_cluster_custom_object(GROUP, VERSION, "gatewayclasses", class_name)
    features = {f["name"] for f in gateway_class["status"].get("supportedFeatures", [])}
    assert "HTTPRoute" in features and "HTTPRouteRequestMirror" not in features, sorted(features)


@pytest.mark.integration
def test_the_gateway_split_matches_the_route_weights_within_sampling_error(stack_ns: tuple[Any, str]) -> None:
    """Given stable and canary behind the stack's Gateway, when 1,000 requests go through it at each of two
    weightings, then each revision's share is the route's weight within 4 binomial standard deviations, and
    every request is attributed to the Service of the pod Traefik chose (from its access log)."""
    stack, ns = stack_ns
    custom = _two_revisions(stack, ns)
    measured = {}
    for canary_weight in (30, 5):
        _replace_route(stack, custom, ns, _route(ns, 100 - canary_weight, canary_weight),
                       {f"{NAME}-stable": 100 - canary_weight, f"{NAME}-canary": canary_weight})
        summary = _generator(stack, ns, rps=100, count=1000, duration=30).start().wait(60)
        backends = summary["backends"]
        share, total = _share(backends, f"{NAME}-canary")
        expected = canary_weight / 100
        bound = SIGMAS * math.sqrt(expected * (1 - expected) / total)
        measured[canary_weight] = {"canary_share": round(share, 4), "requests": total, "bound": round(bound, 4)}
        assert total == 1000 and set(backends) == {f"{NAME}-stable", f"{NAME}-canary"}, backends
        assert all(entry["ok"] == entry["sent"] for entry in backends.values()), backends
        assert abs(share - expected) <= bound, f"canary share {share} for weight {canary_weight}: {backends}"
        assert backends[f"{NAME}-canary"]["role"] == "canary"
    print(f"\ngateway split vs route weight: {json.dumps(measured)}")


@pytest.mark.integration
def test_failures_through_the_gateway_are_attributed_to_the_pod_it_chose(stack_ns: tuple[Any, str]) -> None:
    """Given a canary whose every answer is an error, when traffic goes through the gateway, then the errors are
    counted against the canary Service and the stable Service has none."""
    stack, ns = stack_ns
    _two_revisions(stack, ns, MODELSHIP_FAULT_ERROR_RATE="1")
    backends = _generator(stack, ns, rps=50, count=200, duration=30).start().wait(60)["backends"]
    canary, stable = backends[f"{NAME}-canary"], backends[f"{NAME}-stable"]
    assert canary["error"] == canary["sent"] > 20, backends
    assert stable["ok"] == stable["sent"] > 100, backends
    assert set(backends) == {f"{NAME}-stable", f"{NAME}-canary"}, backends


@pytest.mark.integration
def test_a_request_mirror_rule_breaks_traefik_and_external_mirroring_keeps_live_traffic(
    stack_ns: tuple[Any, str],
) -> None:
    """Given the route with a RequestMirror filter, then Traefik answers every request with 500 (the gap the
    operator's `mirror: External` exists for); given the same copy on the modelship.dev/mirror annotation
    instead, then live traffic is split by Traefik and the generator makes the shadow copy to the canary."""
    stack, ns = stack_ns
    custom = _two_revisions(stack, ns)
    mirror = {"backendRef": {"name": f"{NAME}-canary", "port": 8000}}
    _replace_route(stack, custom, ns, _route(ns, 100, 0, filters=[{"type": "RequestMirror", "requestMirror": mirror}]),
                   {"invalid-httproute-filter": 1})  # what Traefik makes of a rule with a filter it cannot load
    broken = _generator(stack, ns, rps=40, count=40, duration=10, await_gateway_s=0)  # it never routes: send now
    backends = broken.start().wait(30)["backends"]
    live = {k: v for k, v in backends.items() if not k.startswith("mirror:")}
    assert sum(v.get("ok", 0) for v in live.values()) == 0, backends
    assert sum(v.get("sent", 0) for v in live.values()) == 40, backends

    external = _route(ns, 100, 0, metadata={"annotations": {MIRROR_ANNOTATION: json.dumps(mirror)}})
    _replace_route(stack, custom, ns, external, {f"{NAME}-stable": 100, f"{NAME}-canary": 0})
    backends = _generator(stack, ns, rps=40, count=80, duration=10).start().wait(30)["backends"]
    assert backends[f"{NAME}-stable"]["ok"] == backends[f"{NAME}-stable"]["sent"] == 80, backends
    assert backends[f"mirror:{NAME}-canary"]["ok"] > 60, backends
    assert f"{NAME}-canary" not in backends, backends
