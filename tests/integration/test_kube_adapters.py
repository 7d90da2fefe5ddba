"""Kubernetes adapters against the real local API server: SSA ownership, dry-run, route restore, GC.

Runs in its own namespace with a real ModelDeployment as owner (its CRD is installed from
`modelship.domain.crd` when missing), so owner references resolve and the garbage collector acts.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from modelship.adapters import objects
from modelship.adapters.cluster import KubeCluster
from modelship.adapters.kube import Kube, KubeError
from modelship.adapters.routers.factory import router_for
from modelship.adapters.routers.gateway_api import API_VERSION as HTTPROUTE_API
from modelship.adapters.transport import AsyncTransport
from modelship.domain import crd as crd_mod
from modelship.domain.actions import EventType, Role, SetTraffic
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.revision import revision_hash
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
    transport = AsyncTransport.from_kubeconfig(str(stack.kubeconfig))
    yield Kube(transport)
    await transport.close()


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


# --- ownership is the ownerReference chain, not labels (issue 8 item 7) ------------------------------------

DECOY_HASH = "cccccccccc"


def _foreign_deployment(
    name: str, namespace: str, labels: dict[str, str], replicas: int, selector: dict[str, str]
) -> dict[str, Any]:
    """A Deployment someone else made, wearing our labels and selecting pods with `selector`."""
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": selector}, "spec": {
                "nodeSelector": {"modelship.dev/test-nowhere": "true"},
                "containers": [{"name": "triton", "image": "example.com/not-ours:1"}],
            }},
        },
    }


def _make_ready(stack: StackContext, namespace: str, pod: str, ip: str) -> None:
    """Report a Pending pod Ready at `ip`, as a kubelet would (no node runs these pods; the IP is outside the
    stack's pod CIDR, so the data plane starts nothing for it)."""
    status = {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                         "conditions": [{"type": "Ready", "status": "True"}]}}
    stack.run_kubectl("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge",
                      "-p", json.dumps(status))


async def _pods_labelled(kube: Kube, namespace: str, labels: dict[str, str], count: int) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]] | None:
        pods = await kube.list("v1", "Pod", namespace, labels)
        return pods if len(pods) >= count else None

    pods = await _until(listed)
    assert pods, f"expected {count} pods labelled {labels} in {namespace}"
    return list(pods)


async def test_objects_with_our_labels_outside_the_owner_chain_are_never_called_listed_or_deleted(
    stack: StackContext, crd_installed: bool, namespace: str, kube: Kube
) -> None:
    # Given a ModelDeployment whose canary Deployment -> ReplicaSet -> Pod chain is its own, with one Ready pod
    gw = {"gatewayAPI": {"parentRefs": [{"name": "inference-gw", "namespace": "gateways"}]}}
    owner = _create_owner(stack, crd_installed, namespace, "owned", gw)
    spec = _spec(gw)
    cluster = KubeCluster(kube, instance="integration-test")
    await cluster.apply_revision(owner, spec, CANARY, Role.CANARY, 1)
    canary_labels = {objects.MANAGED_BY: objects.MANAGER, **objects.selector_labels(owner.name, CANARY.hash)}
    ours_pods = await _pods_labelled(kube, namespace, canary_labels, 1)
    assert len(ours_pods) == 1
    _make_ready(stack, namespace, ours_pods[0]["metadata"]["name"], "192.0.2.10")

    # and, in the same namespace, look-alikes carrying the canary's labels: a bare pod (no owner at all) and a
    # pod of a foreign Deployment -> ReplicaSet chain, both Ready
    bare = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "bare-lookalike", "namespace": namespace,
                         "labels": objects.pod_labels(owner.name, CANARY)},
            "spec": {"nodeSelector": {"modelship.dev/test-nowhere": "true"},
                     "containers": [{"name": "triton", "image": "example.com/not-ours:1"}]}}
    stack.run_kubectl("create", "-f", "-", stdin=json.dumps(bare))
    _make_ready(stack, namespace, "bare-lookalike", "192.0.2.66")
    foreign_labels = objects.pod_labels(owner.name, CANARY)
    stack.run_kubectl("create", "-f", "-",
                      stdin=json.dumps(_foreign_deployment("lookalike", namespace, foreign_labels, 1,
                                                           {**foreign_labels, "example.com/decoy": "true"})))
    chained = await _pods_labelled(kube, namespace, {**canary_labels, "example.com/decoy": "true"}, 1)
    _make_ready(stack, namespace, chained[0]["metadata"]["name"], "192.0.2.77")
    all_ready = await _pods_labelled(kube, namespace, canary_labels, 3)
    assert len(all_ready) == 3, "the look-alikes carry exactly the labels a label-only selection would pick"

    # When the operator asks which pods of the canary to validate with Triton
    ips = await cluster.ready_pod_ips(owner, CANARY.hash)

    # Then only its own pod's address comes back: the look-alikes get no Triton call
    assert ips == ["192.0.2.10"]


async def test_a_lookalike_deployment_is_neither_a_revision_nor_deleted_nor_taken_over(
    stack: StackContext, crd_installed: bool, namespace: str, kube: Kube
) -> None:
    # Given a ModelDeployment with its own canary Deployment, and foreign Deployments with our labels and the
    # very names the operator computes: one for an old revision, one for the revision the spec asks for now
    gw = {"gatewayAPI": {"parentRefs": [{"name": "inference-gw", "namespace": "gateways"}]}}
    owner = _create_owner(stack, crd_installed, namespace, "decoyed", gw)
    spec = _spec(gw)
    current = Revision(version="2", hash=revision_hash(spec))
    cluster = KubeCluster(kube, instance="integration-test")
    await cluster.apply_revision(owner, spec, CANARY, Role.CANARY, 0)
    for hash_ in (DECOY_HASH, current.hash):
        labels = objects.child_labels(owner.name, hash_, Role.STABLE)
        # the selector the operator's own Deployment would have, so an apply could take the decoy over
        decoy = _foreign_deployment(objects.deployment_name(owner.name, hash_), namespace, labels, 0,
                                    objects.selector_labels(owner.name, hash_))
        stack.run_kubectl("create", "-f", "-", stdin=json.dumps(decoy))
    listed = await kube.list("apps/v1", "Deployment", namespace, objects.owned_selector(owner.name))
    assert len(listed) == 3, "the decoys match the operator's label selector"

    # When the operator lists its revisions
    states = await cluster.revision_states(owner)
    # Then only the Deployment it controls is one
    assert set(states) == {CANARY.hash}

    # When it retires the old revision by its computed name, or applies either revision over a decoy
    await cluster.delete_revision(owner, DECOY_HASH)
    refusals = []
    for revision in (Revision(version="1", hash=DECOY_HASH), current):
        with pytest.raises(KubeError) as refused:
            await cluster.apply_revision(owner, spec, revision, Role.STABLE, 3)
        refusals.append(refused.value)

    # Then nothing foreign is deleted or changed, and each refusal names the object and the fix
    for hash_, refusal in zip((DECOY_HASH, current.hash), refusals, strict=True):
        name = objects.deployment_name(owner.name, hash_)
        kept = await kube.get("apps/v1", "Deployment", namespace, name)
        assert kept is not None, f"{name} was deleted"
        assert kept["spec"]["replicas"] == 0 and not kept["metadata"].get("ownerReferences"), kept["metadata"]
        assert "modelship" not in _managers(kept)
        assert refusal.refused and name in str(refusal) and "rename or delete" in str(refusal)


async def test_a_lookalike_route_is_neither_taken_over_nor_deleted(
    stack: StackContext, crd_installed: bool, namespace: str, kube: Kube
) -> None:
    # Given a foreign HTTPRoute with the name the operator computes for a ModelDeployment
    gw = {"gatewayAPI": {"parentRefs": [{"name": "inference-gw", "namespace": "gateways"}]}}
    owner = _create_owner(stack, crd_installed, namespace, "routed", gw)
    spec = _spec(gw)
    foreign = {
        "apiVersion": HTTPROUTE_API, "kind": "HTTPRoute",
        "metadata": {"name": owner.name, "namespace": namespace,
                     "labels": objects.owned_selector(owner.name)},
        "spec": {"parentRefs": [{"name": "team-b-gw", "namespace": "gateways"}],
                 "rules": [{"backendRefs": [{"name": "team-b", "port": 80}]}]},
    }
    stack.run_kubectl("create", "-f", "-", stdin=json.dumps(foreign))
    router = router_for(spec.traffic, kube)

    # When the operator routes traffic, then cleans up
    with pytest.raises(KubeError) as refused:
        await router.apply(owner, spec, SetTraffic(stable=STABLE, canary=CANARY, canary_weight=50,
                                                      mirror_percent=0))
    await router.cleanup(owner)

    # Then the route is refused, not taken over, and survives the cleanup untouched
    assert refused.value.refused and owner.name in str(refused.value)
    kept = await kube.get(HTTPROUTE_API, "HTTPRoute", namespace, owner.name)
    assert kept is not None
    assert kept["spec"]["rules"][0]["backendRefs"][0]["name"] == "team-b"
    assert "modelship" not in _managers(kept)
