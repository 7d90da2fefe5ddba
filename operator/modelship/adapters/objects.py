"""Pure builders for the Kubernetes objects a ModelDeployment owns (plain dicts, ready for server-side apply).

Pod contract (what the Triton container receives; the local stack's pod runner reads the same):
  command: ["tritonserver"]
  args:    --model-repository=<spec.model.repository> --model-control-mode=explicit
           --load-model=<spec.model.name> --strict-readiness=true
           --metrics-config=summary_latencies=true --allow-metrics=true
           --http-port=8000 --grpc-port=8001 --metrics-port=8002   then spec.serving.args
  env:     MODELSHIP_MODEL_NAME, MODELSHIP_MODEL_VERSION (the pin), MODELSHIP_REVISION, then spec.serving.env
           (a user variable with a MODELSHIP_ name is dropped: the pin must not be overridable).

Version pin: `--load-model` in explicit mode cannot carry a version policy, so a postStart hook
(`PIN_SCRIPT`, python3 from the Triton image) reads the loaded model's config over the model-control API
and reloads it with `version_policy: {specific: {versions: [N]}}`. Kubernetes runs no probe until postStart
returns, so a pod is never Ready serving another version; a failed pin fails the hook and the container
restarts. The local pod runner materialises the same pin from MODELSHIP_MODEL_VERSION instead.

The role label is on Deployments and Services only: a role change must never roll GPU pods.
"""

from __future__ import annotations

from typing import Any

from modelship.adapters.owner import OwnerLike, owner_reference
from modelship.domain.actions import Role
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.status import Revision

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "modelship"
LABEL_DEPLOYMENT = "modelship.dev/deployment"
LABEL_REVISION = "modelship.dev/revision"
LABEL_ROLE = "modelship.dev/role"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_VERSION = "app.kubernetes.io/version"

CONTAINER = "triton"
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
PORTS = (("http", HTTP_PORT), ("grpc", GRPC_PORT), ("metrics", METRICS_PORT))
TRITON_UID = 1000  # the `triton-server` user of the NGC images
ENV_MODEL_NAME = "MODELSHIP_MODEL_NAME"
ENV_MODEL_VERSION = "MODELSHIP_MODEL_VERSION"
ENV_REVISION = "MODELSHIP_REVISION"
RESERVED_ENV_PREFIX = "MODELSHIP_"

PIN_SCRIPT = """\
import json, os, sys, time, urllib.request as ur
base = "http://127.0.0.1:%s" % os.environ.get("MODELSHIP_HTTP_PORT", "8000")
model, version = os.environ["MODELSHIP_MODEL_NAME"], int(os.environ["MODELSHIP_MODEL_VERSION"])
deadline = time.time() + float(os.environ.get("MODELSHIP_PIN_TIMEOUT_S", "1800"))
def call(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = ur.Request(base + path, data=data, method="GET" if body is None else "POST",
                     headers={"Content-Type": "application/json"})
    with ur.urlopen(req, timeout=60) as resp:
        return resp.read()
while True:
    try:
        config = json.loads(call("/v2/models/%s/config" % model))
        break
    except Exception as exc:
        if time.time() > deadline:
            sys.exit("modelship pin: model %s never loaded: %s" % (model, exc))
        time.sleep(0.2)  # the pod is not Ready before this returns: notice the load promptly
config["version_policy"] = {"specific": {"versions": [version]}}
call("/v2/repository/models/%s/load" % model, {"parameters": {"config": json.dumps(config)}})
call("/v2/models/%s/versions/%d/ready" % (model, version))
print("modelship pin: %s pinned to version %d" % (model, version))
"""


def deployment_name(owner_name: str, revision_hash: str) -> str:
    return f"{owner_name}-{revision_hash}"


def role_service_name(owner_name: str, role: Role) -> str:
    return f"{owner_name}-{role.value}"


def selector_labels(owner_name: str, revision_hash: str) -> dict[str, str]:
    """What a revision's Deployment and role Service select: never the role, which moves between revisions."""
    return {LABEL_DEPLOYMENT: owner_name, LABEL_REVISION: revision_hash}


def owned_selector(owner_name: str) -> dict[str, str]:
    """Label selector for every child object of one ModelDeployment."""
    return {MANAGED_BY: MANAGER, LABEL_DEPLOYMENT: owner_name}


def child_labels(owner_name: str, revision_hash: str, role: Role) -> dict[str, str]:
    return {MANAGED_BY: MANAGER, **selector_labels(owner_name, revision_hash), LABEL_ROLE: role.value}


def pod_labels(owner_name: str, revision: Revision) -> dict[str, str]:
    return {
        MANAGED_BY: MANAGER,
        **selector_labels(owner_name, revision.hash),
        LABEL_NAME: owner_name,
        LABEL_VERSION: revision.version,
    }


def metadata(owner: OwnerLike, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels,
        "ownerReferences": [owner_reference(owner)],
    }


def triton_args(spec: ModelDeploymentSpec) -> list[str]:
    """tritonserver arguments: ours first, the user's appended (later flags win in tritonserver)."""
    return [
        f"--model-repository={spec.model.repository}",
        "--model-control-mode=explicit",
        f"--load-model={spec.model.name}",
        "--strict-readiness=true",
        "--metrics-config=summary_latencies=true",
        "--allow-metrics=true",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        *spec.serving.args,
    ]


def triton_env(spec: ModelDeploymentSpec, revision: Revision) -> list[dict[str, str]]:
    """Pin variables first; user variables deduplicated by name (SSA rejects duplicate list keys)."""
    env: dict[str, str] = {
        ENV_MODEL_NAME: spec.model.name,
        ENV_MODEL_VERSION: revision.version,
        ENV_REVISION: revision.hash,
    }
    for var in spec.serving.env:
        if not var.name.startswith(RESERVED_ENV_PREFIX):
            env[var.name] = var.value
    return [{"name": k, "value": v} for k, v in env.items()]


def resources(spec: ModelDeploymentSpec) -> dict[str, Any]:
    """Requests equal limits (Guaranteed QoS: a GPU server must not be the first one evicted)."""
    res = spec.serving.resources
    amounts: dict[str, str] = {"cpu": res.cpu, "memory": res.memory}
    if res.gpus > 0:
        amounts["nvidia.com/gpu"] = str(res.gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


DRAIN_S = 5
"""preStop pause: EndpointSlices and gateways forget a terminating pod asynchronously; until they do, requests
still reach it and Triton must answer them, so SIGTERM (after which Triton refuses new requests) waits this long."""
TRITON_EXIT_TIMEOUT_S = 30  # tritonserver's --exit-timeout-secs default: how long it waits for in-flight requests


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def container(spec: ModelDeploymentSpec, revision: Revision) -> dict[str, Any]:
    return {
        "name": CONTAINER,
        "image": spec.serving.image,
        "command": ["tritonserver"],
        "args": triton_args(spec),
        "env": triton_env(spec, revision),
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in PORTS],
        "resources": resources(spec),
        # Loading a large model can take many minutes (30 here): liveness only starts once the server answers;
        # a short period because no pod is Ready before this probe passes once.
        "startupProbe": _probe("/v2/health/live", 2, 900),
        "readinessProbe": _probe("/v2/health/ready", 5, 3),
        "livenessProbe": _probe("/v2/health/live", 10, 6),
        "lifecycle": {
            "postStart": {"exec": {"command": ["python3", "-c", PIN_SCRIPT]}},
            "preStop": {"exec": {"command": ["sleep", str(DRAIN_S)]}},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, {"name": "tmp", "mountPath": "/tmp"}],
    }


def pod_template(owner: OwnerLike, spec: ModelDeploymentSpec, revision: Revision) -> dict[str, Any]:
    serving = spec.serving
    pod_spec: dict[str, Any] = {
        "containers": [container(spec, revision)],
        "terminationGracePeriodSeconds": DRAIN_S + TRITON_EXIT_TIMEOUT_S + 10,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": TRITON_UID,
            "runAsGroup": TRITON_UID,
            "fsGroup": TRITON_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automountServiceAccountToken": False,  # Triton never talks to the API server
        "enableServiceLinks": False,
        "volumes": [
            # Python backends and the shared-memory protocol need more than the runtime's 64 MiB /dev/shm.
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    if serving.node_selector:
        pod_spec["nodeSelector"] = dict(serving.node_selector)
    if serving.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in serving.tolerations
        ]
    return {
        "metadata": {
            "labels": pod_labels(owner.name, revision),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(METRICS_PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod_spec,
    }


def deployment(
    owner: OwnerLike, spec: ModelDeploymentSpec, revision: Revision, role: Role, replicas: int
) -> dict[str, Any]:
    """A revision's Deployment; the pod template depends only on spec.model and spec.serving (the hash)."""
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    if spec.serving.resources.gpus > 0:
        # No spare GPU for a surge pod: replace in place. The template never changes within a revision anyway.
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    else:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            owner, deployment_name(owner.name, revision.hash), child_labels(owner.name, revision.hash, role)
        ),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 1,
            "selector": {"matchLabels": selector_labels(owner.name, revision.hash)},
            "strategy": strategy,
            "template": pod_template(owner, spec, revision),
        },
    }


def _service(owner: OwnerLike, name: str, labels: dict[str, str], selector: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, name, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [
                {"name": n, "port": p, "targetPort": n, "protocol": "TCP", "appProtocol": a}
                for (n, p), a in zip(PORTS, ("http", "grpc", "http"), strict=True)
            ],
        },
    }


def role_service(owner: OwnerLike, revision: Revision, role: Role) -> dict[str, Any]:
    """`<name>-stable` / `<name>-canary`: weighted backends; each follows the revision holding its role."""
    return _service(
        owner,
        role_service_name(owner.name, role),
        child_labels(owner.name, revision.hash, role),
        selector_labels(owner.name, revision.hash),
    )


def entry_service(owner: OwnerLike, only: Revision | None = None) -> dict[str, Any]:
    """`<name>`: the pods that take live traffic (replica-ratio mode serves through it; Istio uses its host).

    With `only`, it selects that one revision: a canary that has no live weight yet (validating, shadow) or
    has just been rolled back must not sit behind the shared Service, whatever its pods' readiness says.
    Otherwise it selects every Triton pod of the deployment (`app.kubernetes.io/name`, which the shadow
    comparator's pod does not carry: it must never answer a live request).
    """
    every = {LABEL_DEPLOYMENT: owner.name, LABEL_NAME: owner.name}
    selector = selector_labels(owner.name, only.hash) if only is not None else every
    return _service(owner, owner.name, owned_selector(owner.name), selector)
