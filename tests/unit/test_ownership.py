"""Ownership is the controller ownerReference chain back to the ModelDeployment's uid, never labels alone.

A pod or Deployment anyone can create with our labels must not get Triton calls, be listed as a revision
(and so deleted as an orphan), or be deleted because its name matches one the operator computes.
"""

from __future__ import annotations

from typing import Any

import pytest
from adapter_fixtures import CANARY, OWNER, STABLE, fake_kube, make_spec
from modelship.adapters import objects
from modelship.adapters.cluster import KubeCluster
from modelship.adapters.kube import KubeError, controlled_by
from modelship.adapters.routers.gateway_api import GatewayApiRouterAdapter
from modelship.adapters.routers.replica_ratio import ReplicaRatioRouter
from modelship.domain.actions import Role, SetTraffic
from modelship.domain.api import GatewayApiRouter
from modelship.domain.revision import revision_hash
from modelship.domain.status import Revision

DEPLOYMENTS = "/apis/apps/v1/namespaces/ml/deployments"
REPLICASETS = "/apis/apps/v1/namespaces/ml/replicasets"
PODS = "/api/v1/namespaces/ml/pods"
ROUTE = "/apis/gateway.networking.k8s.io/v1/namespaces/ml/httproutes/fraud-scorer"


def _ref(uid: str, controller: bool = True) -> list[dict[str, Any]]:
    return [{"apiVersion": "x/v1", "kind": "K", "name": "n", "uid": uid, "controller": controller}]


def _labels(rev: str) -> dict[str, str]:
    return {objects.MANAGED_BY: objects.MANAGER, objects.LABEL_DEPLOYMENT: OWNER.name,
            objects.LABEL_REVISION: rev}


def _dep(rev: str, uid: str, owner_uid: str | None, ready: int = 1) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"{OWNER.name}-{rev}", "uid": uid, "generation": 1, "labels": _labels(rev)}
    if owner_uid is not None:
        meta["ownerReferences"] = _ref(owner_uid)
    return {"metadata": meta, "spec": {"replicas": 2},
            "status": {"observedGeneration": 1, "readyReplicas": ready, "updatedReplicas": 2}}


def _rs(rev: str, uid: str, deployment_uid: str) -> dict[str, Any]:
    return {"metadata": {"name": f"rs-{uid}", "uid": uid, "labels": _labels(rev),
                         "ownerReferences": _ref(deployment_uid)}}


def _pod(rev: str, ip: str, owner_uid: str | None, unschedulable: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": f"p-{ip}", "labels": _labels(rev)}
    if owner_uid is not None:
        meta["ownerReferences"] = _ref(owner_uid)
    conditions = [{"type": "Ready", "status": "False" if unschedulable else "True"}]
    if unschedulable:
        conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                           "message": unschedulable})
    return {"metadata": meta, "status": {"conditions": conditions, "podIP": ip}}


def test_controlled_by_needs_the_controller_reference_with_that_uid() -> None:
    assert controlled_by({"metadata": {"ownerReferences": _ref(OWNER.uid)}}, OWNER.uid)
    assert not controlled_by({"metadata": {"ownerReferences": _ref(OWNER.uid, controller=False)}}, OWNER.uid)
    assert not controlled_by({"metadata": {"ownerReferences": _ref("someone-else")}}, OWNER.uid)
    assert not controlled_by({"metadata": {}}, OWNER.uid)


async def test_a_foreign_pod_with_our_labels_gets_no_triton_call() -> None:
    """Given our canary pod (Pod -> ReplicaSet -> Deployment -> ModelDeployment) and three impostors with the
    same labels (no owner, owned by a foreign ReplicaSet, owned by a ReplicaSet of a foreign Deployment),
    when the controller asks which pods to validate, then only ours is named."""
    kube, t = fake_kube()
    t.lists[DEPLOYMENTS] = [_dep(CANARY.hash, "dep-ours", OWNER.uid), _dep(CANARY.hash, "dep-decoy", None)]
    t.lists[REPLICASETS] = [_rs(CANARY.hash, "rs-ours", "dep-ours"), _rs(CANARY.hash, "rs-decoy", "dep-decoy")]
    t.lists[PODS] = [_pod(CANARY.hash, "10.0.0.2", "rs-ours"), _pod(CANARY.hash, "10.0.0.66", None),
                     _pod(CANARY.hash, "10.0.0.67", "rs-elsewhere"), _pod(CANARY.hash, "10.0.0.68", "rs-decoy")]
    assert await KubeCluster(kube, instance="t").ready_pod_ips(OWNER, CANARY.hash) == ["10.0.0.2"]


async def test_a_decoy_deployment_is_not_a_revision_and_its_pods_say_nothing() -> None:
    """Given a decoy Deployment with our labels (not controlled by the ModelDeployment), when revisions are
    read, then it is not one of them (so never deleted as an orphan), and a foreign unschedulable pod does
    not speak for our revision."""
    kube, t = fake_kube()
    decoy = "dec0y00000"
    t.lists[DEPLOYMENTS] = [_dep(STABLE.hash, "dep-ours", OWNER.uid, ready=1), _dep(decoy, "dep-decoy", None)]
    t.lists[REPLICASETS] = [_rs(STABLE.hash, "rs-ours", "dep-ours")]
    t.lists[PODS] = [_pod(STABLE.hash, "10.0.0.2", "rs-ours"),
                     _pod(STABLE.hash, "10.0.0.9", None, unschedulable="0/3 nodes: fake")]
    states = await KubeCluster(kube, instance="t").revision_states(OWNER)
    assert set(states) == {STABLE.hash}
    assert states[STABLE.hash].unschedulable is None


async def test_a_decoy_deployment_with_the_computed_name_is_never_deleted() -> None:
    """Given a Deployment named `<name>-<hash>` that the ModelDeployment does not control, when the engine
    deletes that revision, then no DELETE is sent; ours is deleted with a uid precondition."""
    kube, t = fake_kube()
    cluster = KubeCluster(kube, instance="t")
    path = f"{DEPLOYMENTS}/{OWNER.name}-{CANARY.hash}"
    t.objects[path] = _dep(CANARY.hash, "dep-decoy", "another-owner")
    await cluster.delete_revision(OWNER, CANARY.hash)
    assert path in t.objects and not [c for c in t.calls if c.method == "DELETE"]
    t.objects[path] = _dep(CANARY.hash, "dep-ours", OWNER.uid)
    await cluster.delete_revision(OWNER, CANARY.hash)
    (delete,) = [c for c in t.calls if c.method == "DELETE"]
    assert delete.body == {"preconditions": {"uid": "dep-ours"}} and path not in t.objects


async def test_a_decoy_named_for_the_revision_the_spec_asks_for_is_not_taken_over() -> None:
    """Given a foreign Deployment with the computed name of the spec's own revision, when the engine applies
    that revision, then no apply is sent (a forced apply would take it over) and the refusal names it."""
    kube, t = fake_kube()
    spec = make_spec()
    current = Revision(version=spec.model.version, hash=revision_hash(spec))
    path = f"{DEPLOYMENTS}/{OWNER.name}-{current.hash}"
    t.objects[path] = _dep(current.hash, "dep-decoy", None)
    with pytest.raises(KubeError) as refused:
        await KubeCluster(kube, instance="t").apply_revision(OWNER, spec, current, Role.CANARY, 2)
    assert refused.value.refused and f"{OWNER.name}-{current.hash}" in str(refused.value)
    assert [c.method for c in t.calls] == ["GET"]


async def test_a_foreign_route_with_our_name_is_neither_taken_over_nor_deleted() -> None:
    """Given an HTTPRoute named like the ModelDeployment that another owner controls, when the router
    applies or cleans up, then it refuses to write it (a refusal, so a condition) and never deletes it."""
    kube, t = fake_kube()
    foreign = {"metadata": {"name": OWNER.name, "uid": "route-x", "ownerReferences": _ref("team-b")},
               "spec": {"rules": []}}
    t.objects[ROUTE] = foreign
    router = GatewayApiRouterAdapter(kube, GatewayApiRouter.model_validate({"parentRefs": [{"name": "gw"}]}))
    with pytest.raises(KubeError) as refused:
        await router.apply(OWNER, None, SetTraffic(STABLE, CANARY, 20, 0))  # type: ignore[arg-type]
    assert refused.value.refused and "not controlled by" in str(refused.value)
    await router.cleanup(OWNER)
    assert t.objects[ROUTE] == foreign
    assert [c.method for c in t.calls if c.method not in ("GET",)] == []


async def test_replica_ratio_router_counts_only_owned_deployments() -> None:
    """A decoy Deployment with our labels and a ready pod must not count as canary capacity."""
    kube, t = fake_kube()
    decoy = _dep(CANARY.hash, "dep-decoy", None, ready=5)
    t.lists[DEPLOYMENTS] = [_dep(STABLE.hash, "dep-ours", OWNER.uid, ready=2), decoy]
    state = await ReplicaRatioRouter(kube).apply(OWNER, None, SetTraffic(STABLE, CANARY, 50, 0))  # type: ignore[arg-type]
    assert state.canary_weight == 0
