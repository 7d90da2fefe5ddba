"""The shadow comparator's objects (plain dicts for server-side apply), and how the operator runs and removes them.

One comparator per ModelDeployment while comparison runs: a Deployment and a Service `<name>-comparator`, owned by
the ModelDeployment, labelled `modelship.dev/role=comparator`, with a ServiceAccount of its own bound (RoleBinding
in the namespace) to the ClusterRole `modelship-comparator`: read EndpointSlices, nothing else. No GPU. Its pod
carries `app.kubernetes.io/managed-by=modelship`, so the Prometheus that scrapes Triton's pods scrapes it too
(port `metrics`), and `modelship.dev/compared-revision`, so a comparator of an earlier canary never counts.
"""

from __future__ import annotations

from typing import Any

from modelship.adapters.cache import ChildCache, ensure, unchanged
from modelship.adapters.kube import Kube, controlled_by, not_ours
from modelship.adapters.objects import LABEL_DEPLOYMENT, LABEL_ROLE, MANAGED_BY, MANAGER, metadata
from modelship.adapters.owner import OwnerLike
from modelship.domain.actions import EnsureComparator

COMPARATOR_ROLE = "comparator"
CLUSTER_ROLE = "modelship-comparator"
"""Its name in crds/comparator-clusterrole.yaml; the chart names it `<release fullname>-comparator` (two releases,
e.g. shards, must not fight over one cluster-scoped object) and passes that name (MODELSHIP_COMPARATOR_CLUSTER_ROLE)."""
LABEL_COMPARED_REVISION = "modelship.dev/compared-revision"
ENV_SPEC = "MODELSHIP_COMPARE"
DEFAULT_COMPARATOR_IMAGE = "ghcr.io/modelship/modelship:0.1.0"
"""The operator's own image (it ships `modelship compare`); the chart sets MODELSHIP_COMPARATOR_IMAGE to it."""
HTTP_PORT, METRICS_PORT = 8000, 8002
UID = 65532


def comparator_name(owner_name: str) -> str:
    """`<name>-comparator`: 63 characters at most, as the name is at most 52 (`MAX_NAME_LENGTH`)."""
    return f"{owner_name}-comparator"


def selector(owner_name: str) -> dict[str, str]:
    return {LABEL_DEPLOYMENT: owner_name, LABEL_ROLE: COMPARATOR_ROLE}


def labels(owner_name: str) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, **selector(owner_name)}


def cluster_role() -> dict[str, Any]:
    """What every comparator may do: find the ready pods of its ModelDeployment's role Services."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": CLUSTER_ROLE, "labels": {MANAGED_BY: MANAGER}},
        "rules": [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list"]}],
    }


def service_account(owner: OwnerLike) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(owner, comparator_name(owner.name), labels(owner.name)),
    }


def role_binding(owner: OwnerLike, cluster_role_name: str = CLUSTER_ROLE) -> dict[str, Any]:
    name = comparator_name(owner.name)
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": metadata(owner, name, labels(owner.name)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role_name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": owner.namespace}],
    }


def deployment(owner: OwnerLike, action: EnsureComparator, image: str) -> dict[str, Any]:
    """One replica of `modelship compare` (its state is a window of recent answers: a second replica would
    halve each one's evidence)."""
    name = comparator_name(owner.name)
    pod_labels = {**labels(owner.name), LABEL_COMPARED_REVISION: action.canary.hash}
    spec_json = action.compare.model_dump_json(by_alias=True)
    container = {
        "name": COMPARATOR_ROLE,
        "image": image,
        "command": ["modelship", "compare"],
        "args": [
            "--namespace", owner.namespace, "--deployment", owner.name,
            "--sample-percent", f"{action.sample_percent:g}", "--window-s", str(action.window_seconds),
            "--port", str(HTTP_PORT), "--metrics-port", str(METRICS_PORT),
            *(["--after-promotion"] if action.after_promotion else []),
        ],
        "env": [{"name": ENV_SPEC, "value": spec_json}],
        "ports": [
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 2},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10},
        "resources": {
            "requests": {"cpu": "250m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        },
        "securityContext": {
            "runAsNonRoot": True, "runAsUser": UID, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, name, labels(owner.name)),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": selector(owner.name)},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": name,
                    "automountServiceAccountToken": True,
                    "enableServiceLinks": False,
                    "containers": [container],
                },
            },
        },
    }


def service(owner: OwnerLike) -> dict[str, Any]:
    """Where the route mirrors to while comparing (the HTTPRoute RequestMirror backendRef, Istio's mirror host)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, comparator_name(owner.name), labels(owner.name)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(owner.name),
            "ports": [{"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP",
                       "appProtocol": "http"}],
        },
    }


class Comparators:
    """Runs and removes comparators through the watch cache: nothing is written when nothing would change."""

    def __init__(self, kube: Kube, cache: ChildCache, image: str, cluster_role_name: str = CLUSTER_ROLE) -> None:
        self.kube = kube
        self.cache = cache
        self.image = image
        self.cluster_role_name = cluster_role_name

    async def apply(self, owner: OwnerLike, action: EnsureComparator) -> None:
        name = comparator_name(owner.name)
        for api_version, kind in KINDS:
            found = await self.cache.lookup(api_version, kind, owner, name)
            if found is not None and not controlled_by(found, owner.uid):
                raise not_ours(kind, owner, name)
        desired = deployment(owner, action, self.image)
        if not unchanged(desired, self.cache.cached("Deployment", owner.uid, name)):
            # its identity first, the pod needs both to start; neither is watched, so they are applied only
            # with a Deployment that changes (a reconcile that changes nothing sends nothing)
            await self.kube.apply(service_account(owner))
            await self.kube.apply(role_binding(owner, self.cluster_role_name))
        await ensure(self.kube, self.cache, service(owner))
        await ensure(self.kube, self.cache, desired)

    async def remove(self, owner: OwnerLike) -> None:
        """Delete what is there; with nothing cached (the usual case outside Shadow) this sends nothing."""
        name = comparator_name(owner.name)
        running = [
            (api_version, kind, found) for api_version, kind in KINDS
            if (found := self.cache.cached(kind, owner.uid, name)) is not None
        ]
        if not running:
            return
        for api_version, kind, found in running:
            uid = found.get("metadata", {}).get("uid")
            await self.kube.delete(api_version, kind, owner.namespace, name, uid=str(uid) if uid else None)
            self.cache.forget(found)
        await self.kube.delete_owned("rbac.authorization.k8s.io/v1", "RoleBinding", owner, name)
        await self.kube.delete_owned("v1", "ServiceAccount", owner, name)


KINDS = (("apps/v1", "Deployment"), ("v1", "Service"))
"""The comparator's watched objects (its ServiceAccount and RoleBinding are not watched)."""
