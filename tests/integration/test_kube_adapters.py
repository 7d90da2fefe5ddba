"""Kubernetes adapters against the real local API server: SSA ownership, dry-run, route restore, GC.

Runs in its own namespace with a real ModelDeployment as owner (its CRD is installed from
`modelship.domain.crd` when missing), so owner references resolve and the garbage collector acts.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from modelship.adapters import objects
from modelship.adapters.kube import ApiClientTransport, Kube, KubeCluster
from modelship.adapters.routers.factory import router_for
from modelship.adapters.routers.gateway_api import API_VERSION as HTTPROUTE_API
from modelship.domain import crd as crd_mod
from modelship.domain.actions import EventType, Role, SetTraffic
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.status import Revision

from e2e.stack import StackContext

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

STABLE = Revision(version="1", hash="aaaaaaaaaa")
CANARY = Revision(version="2", hash="bbbbbbbbbb")


@dataclass(frozen=True)
class Owner:
    namespace: str
    name: str
    uid: str


def _spec(traffic: dict[str, Any]) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({
        "model": {"name": "fraud_scorer", "version": "2", "repository": "s3://models/triton"},
        "serving": {
            "replicas": 1,
            "resources": {"gpus": 1, "cpu": "100m", "memory": "64Mi"},
            # Nothing matches: the scheduler must report why the pod stays Pending (and no Triton starts).
            "nodeSelector": {"modelship.dev/test-nowhere": "true"},
        },
        "traffic": traffic,
    })


CRD_NAME = "crd/modeldeployments.modelship.dev"


@pytest.fixture(scope="module")
def crd_installed(stack: StackContext) -> bool:
    """Install the project's CRD (as the stack does) so owners are real; False when it cannot be."""
    if stack.run_kubectl("get", CRD_NAME, "--ignore-not-found", "-o", "name").strip():
        return True
    try:
        stack.run_kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelship-stack",
                          "-f", "-", stdin=json.dumps(crd_mod.crd()))
        stack.run_kubectl("wait", "--for=condition=Established", "--timeout=60s", CRD_NAME)
    except RuntimeError:
        return False
    return True


@pytest.fixture(scope="module")
def namespace(stack: StackContext) -> Iterator[str]:
    ns = f"adapters-{uuid.uuid4().hex[:8]}"
    stack.run_kubectl("create", "namespace", ns)
    yield ns
    stack.run_kubectl("delete", "namespace", ns, "--wait=false", check=False)


def _create_owner(
    stack: StackContext, crd_installed: bool, namespace: str, name: str, traffic: dict[str, Any]
) -> Owner:
    if not crd_installed:
        pytest.skip("the ModelDeployment CRD cannot be installed on the stack; owners would not resolve")
    spec = _spec(traffic).model_dump(mode="json", by_alias=True, exclude_none=True)
    # A running operator must leave this owner alone: a custom query with a selector lacking the namespace
    # guard passes the CRD's CEL rule but is semantically invalid, so the operator freezes it, touches nothing.
    spec["slo"] = {"custom": [{"name": "freeze", "max": 1,
                               "query": 'avg(a{namespace="{{namespace}}"}) + avg(unguarded)'}]}
    manifest = {
        "apiVersion": "modelship.dev/v1alpha1", "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace}, "spec": spec,
    }
    stack.run_kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    uid = stack.run_kubectl("get", "modeldeployment", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}")
    return Owner(namespace=namespace, name=name, uid=uid.strip())


@pytest.fixture
async def kube(stack: StackContext) -> AsyncIterator[Kube]:
    yield Kube(ApiClientTransport(stack.api_client()))


def _managers(obj: dict[str, Any]) -> dict[str, str]:
    return {m["manager"]: m["operation"] for m in obj["metadata"].get("managedFields", [])}


async def _until(probe: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await probe()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.5)


async def test_dry_run_validates_everything_and_creates_nothing(
    stack: StackContext, namespace: str, kube: Kube
) -> None:
    parents = [{"name": "inference-gw", "namespace": "gateways"}]
    gw = {"gatewayAPI": {"parentRefs": parents, "hostnames": ["a.test"]}}
    owner = Owner(namespace=namespace, name="dry", uid=str(uuid.uuid4()))
    spec = _spec(gw)
    action = SetTraffic(stable=STABLE, canary=CANARY, canary_weight=25, mirror_percent=40)
    from modelship.adapters.routers import gateway_api, istio  # noqa: PLC0415

    built = [
        objects.deployment(owner, spec, CANARY, Role.CANARY, 2),
        objects.role_service(owner, STABLE, Role.STABLE),
        objects.role_service(owner, CANARY, Role.CANARY),
        objects.entry_service(owner),
        gateway_api.desired_route(owner, spec.traffic.gateway_api, action),  # type: ignore[arg-type]
        istio.desired_virtual_service(owner, _spec({"istio": {"gateways": ["gw"]}}).traffic.istio,  # type: ignore[arg-type]
                                      action),
    ]
    for obj in built:
        echoed = await kube.apply(obj, dry_run=True)  # strict field validation: unknown fields would fail
        assert echoed["metadata"]["name"] == obj["metadata"]["name"]
        assert "modelship" in _managers(echoed)
    assert await kube.get("apps/v1", "Deployment", namespace, f"dry-{CANARY.hash}") is None
    assert await kube.get(HTTPROUTE_API, "HTTPRoute", namespace, "dry") is None


async def test_apply_route_restore_states_events_and_garbage_collection(
    stack: StackContext, crd_installed: bool, namespace: str, kube: Kube
) -> None:
    gw = {"gatewayAPI": {"parentRefs": [{"name": "inference-gw", "namespace": "gateways"}]}}
    owner = _create_owner(stack, crd_installed, namespace, "fraud", gw)
    spec = _spec(gw)
    cluster = KubeCluster(kube, instance="integration-test")

    await cluster.apply_revision(owner, spec, CANARY, Role.CANARY, 1)
    dep = await kube.get("apps/v1", "Deployment", namespace, f"fraud-{CANARY.hash}")
    assert dep is not None
    assert _managers(dep).get("modelship") == "Apply"
    assert dep["metadata"]["ownerReferences"][0]["uid"] == owner.uid

    # The scheduler's reason reaches RevisionState.
    async def pending() -> Any:
        state = (await cluster.revision_states(owner)).get(CANARY.hash)
        return state if state and state.unschedulable else None

    state = await _until(pending)
    assert state is not None, "pod never reported Unschedulable"
    assert state.ready_replicas == 0 and "node" in (state.unschedulable or "")

    router = router_for(spec.traffic, kube)
    action = SetTraffic(stable=STABLE, canary=CANARY, canary_weight=25, mirror_percent=40)
    first = await router.apply(owner, spec, action)
    assert (first.exists, first.in_sync) == (False, False)
    route = await kube.get(HTTPROUTE_API, "HTTPRoute", namespace, "fraud")
    assert route is not None and _managers(route).get("modelship") == "Apply"
    steady = await router.apply(owner, spec, action)
    assert (steady.in_sync, steady.canary_weight, steady.mirror_percent) == (True, 25, 40)

    # Someone edits the weights by hand: the next apply reports the drift and restores them.
    patch = {"spec": {"rules": [{"backendRefs": [{"name": "fraud-stable", "port": 8000, "weight": 10},
                                                 {"name": "fraud-canary", "port": 8000, "weight": 90}]}]}}
    stack.run_kubectl("patch", "httproute", "fraud", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    drifted = await router.apply(owner, spec, action)
    assert (drifted.in_sync, drifted.canary_weight) == (False, 90)
    route = await kube.get(HTTPROUTE_API, "HTTPRoute", namespace, "fraud")
    assert route is not None
    weights = [b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]]
    assert weights == [75, 25]
    assert route["spec"]["rules"][0]["filters"][0]["requestMirror"]["percent"] == 40

    svc = await kube.get("v1", "Service", namespace, "fraud-canary")
    assert svc is not None and svc["spec"]["selector"][objects.LABEL_REVISION] == CANARY.hash

    await cluster.emit_event(owner, EventType.WARNING, "RolledBack", "errorRate 0.2 > max 0.01")
    events = json.loads(stack.run_kubectl("get", "events", "-n", namespace, "-o", "json",
                                          "--field-selector", "involvedObject.name=fraud"))["items"]
    assert any(e["reason"] == "RolledBack" and e["type"] == "Warning" for e in events)

    # Deleting the owner garbage-collects every child.
    stack.run_kubectl("delete", "modeldeployment", "fraud", "-n", namespace, "--wait=false")

    async def gone() -> bool:
        left = [
            await kube.get("apps/v1", "Deployment", namespace, f"fraud-{CANARY.hash}"),
            await kube.get("v1", "Service", namespace, "fraud"),
            await kube.get("v1", "Service", namespace, "fraud-stable"),
            await kube.get(HTTPROUTE_API, "HTTPRoute", namespace, "fraud"),
        ]
        return all(obj is None for obj in left)

    assert await _until(gone, timeout=90), "children survived their owner"


async def test_istio_virtual_service_applies_and_reads_back(
    stack: StackContext, crd_installed: bool, namespace: str, kube: Kube
) -> None:
    traffic = {"istio": {"hosts": ["fraud.example.com"]}}
    owner = _create_owner(stack, crd_installed, namespace, "mesh", traffic)
    spec = _spec(traffic)
    router = router_for(spec.traffic, kube)
    action = SetTraffic(stable=STABLE, canary=CANARY, canary_weight=5, mirror_percent=100)
    await router.apply(owner, spec, action)
    observed = await router.observe(owner, spec)
    assert (observed.exists, observed.canary_weight, observed.mirror_percent) == (True, 5, 100)
    assert (await router.apply(owner, spec, action)).in_sync
    await router.cleanup(owner)
    assert not (await router.observe(owner, spec)).exists
