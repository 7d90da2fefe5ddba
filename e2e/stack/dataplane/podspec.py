"""How the pod runner reads a Triton pod: the contract between the operator's Deployment and the stack.

Why a separate, pure module: the operator's Deployment builder and this parser must agree on
arguments and environment; keeping the parsing free of I/O makes that contract unit-testable.

Contract (see e2e/README-dataplane.md):
- pods labelled ``app.kubernetes.io/managed-by=modelship``, phase Running, podIP inside the pod CIDR (a pod
  with a deletionTimestamp is terminated as a kubelet would: preStop, SIGTERM, grace period, then removed);
- the container's probes, postStart/preStop hooks and the pod's grace period (dataplane/kubelet.py);
- the container that declares a port named ``http``/``grpc``/``metrics`` (else the first one);
  its ``command + args`` are parsed like tritonserver's CLI:
  ``--model-repository=URI`` (or ``--model-store``), ``--model-control-mode``, ``--load-model``
  (repeatable), ``--http-port``/``--grpc-port``/``--metrics-port`` (else the container ports named
  http/grpc/metrics, else 8000/8001/8002); addresses, backend directory, metrics flags and the
  executable itself are the stack's; every other ``--flag`` is passed through to tritonserver;
- env: literal ``value``s plus ``fieldRef`` to metadata.name/namespace/uid, status.podIP and
  metadata.labels['k']; ``MODELSHIP_MODEL_VERSION`` pins the loaded model(s) to that version,
  ``MODELSHIP_MODEL_NAME`` names the model when no ``--load-model`` is given;
- ``PODRUNNER_MODE=ip-only`` in the container's env (``spec.serving.env`` of a ModelDeployment): the pod
  gets its IP in the pod network but no tritonserver. The fleet bench (bench/fleet.py) runs 1,000 such
  pods and answers on their IPs with its own stand-in; a real Triton each would not fit on the machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.stack.dataplane.comparator import is_comparator
from e2e.stack.dataplane.kubelet import Lifecycle, parse_lifecycle

MANAGED_BY = ("app.kubernetes.io/managed-by", "modelship")
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
IP_ONLY = ("PODRUNNER_MODE", "ip-only")
# flags the stack sets itself (values from the pod would bind wrong addresses or paths)
_OWNED = {
    "model-repository", "model-store", "model-control-mode", "load-model", "backend-directory",
    "http-address", "grpc-address", "metrics-address", "http-port", "grpc-port", "metrics-port",
    "allow-gpu-metrics", "metrics-config", "metrics-interval-ms", "exit-timeout-secs",
}  # fmt: skip
_FLAG = re.compile(r"^--([a-z0-9][a-z0-9-]*)(?:=(.*))?$", re.DOTALL)
_LABEL_REF = re.compile(r"^metadata\.labels\['([^']+)'\]$")


@dataclass(frozen=True)
class TritonPod:
    """Everything needed to run one pod's tritonserver."""

    uid: str
    namespace: str
    name: str
    ip: str
    node: str
    labels: Mapping[str, str]
    repository_uri: str
    models: tuple[str, ...]
    version: int | None
    ports: Mapping[str, int]
    env: Mapping[str, str]
    passthrough: tuple[str, ...] = ()
    control_mode: str = "explicit"
    errors: tuple[str, ...] = field(default=())
    ip_only: bool = False  # IP in the pod network, no tritonserver (see IP_ONLY)
    comparator_args: tuple[str, ...] | None = None
    """A shadow comparator pod (`modelship compare ARGS`): run that, not tritonserver (dataplane/comparator.py)."""
    service_account: str = ""
    lifecycle: Lifecycle = field(default=Lifecycle())
    """Probes, hooks and grace period: the runner acts as the pod's kubelet (dataplane/kubelet.py)."""

    @property
    def key(self) -> str:
        """Identity of a runnable pod: a new IP or uid means a new process."""
        return f"{self.namespace}/{self.name}/{self.uid}/{self.ip}"


def _get(obj: Any, *path: str) -> Any:
    """Read nested attributes or keys (kubernetes client models and plain dicts alike)."""
    for part in path:
        if obj is None:
            return None
        obj = obj.get(part) if isinstance(obj, dict) else getattr(obj, part, None)
    return obj


def is_candidate(pod: Any) -> bool:
    """Ours, scheduled, Running and with an IP (a pod being deleted too: the runner terminates it)."""
    labels = _get(pod, "metadata", "labels") or {}
    return (
        labels.get(MANAGED_BY[0]) == MANAGED_BY[1]
        and _get(pod, "status", "phase") == "Running"
        and bool(_get(pod, "status", "pod_ip"))
    )


def is_deleting(pod: Any) -> bool:
    return _get(pod, "metadata", "deletion_timestamp") is not None


def raw_identity(pod: Any) -> tuple[str, str, str]:
    """(namespace, name, uid) of a pod as the API gives it."""
    return (str(_get(pod, "metadata", "namespace")), str(_get(pod, "metadata", "name")),
            str(_get(pod, "metadata", "uid") or ""))  # fmt: skip


def deletion_grace_s(pod: Any, default: float) -> float:
    """What is left of the grace period the deletion asked for (its deletionGracePeriodSeconds)."""
    grace = _get(pod, "metadata", "deletion_grace_period_seconds")
    return default if grace is None else float(grace)


def parse_key(pod: Any) -> tuple[str, str]:
    """(uid, resourceVersion): a pod with the same key parses to the same TritonPod."""
    return str(_get(pod, "metadata", "uid") or ""), str(_get(pod, "metadata", "resource_version") or "")


def parse_flags(tokens: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Split ``--flag=value`` / ``--flag value`` tokens into owned flag values and passthrough tokens."""
    owned: dict[str, list[str]] = {}
    rest: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        m = _FLAG.match(tok)
        if not m:
            i += 1  # executable name or stray positional: tritonserver takes none
            continue
        name, value = m.group(1), m.group(2)
        if value is None and i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value = tokens[i + 1]
            i += 1
        if name in _OWNED:
            owned.setdefault(name, []).append(value or "")
        else:
            rest.append(f"--{name}" if value is None else f"--{name}={value}")
        i += 1
    return owned, rest


def _env(container: Any, pod: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    refs = {
        "metadata.name": _get(pod, "metadata", "name"),
        "metadata.namespace": _get(pod, "metadata", "namespace"),
        "metadata.uid": _get(pod, "metadata", "uid"),
        "status.podIP": _get(pod, "status", "pod_ip"),
        "spec.nodeName": _get(pod, "spec", "node_name"),
    }
    labels = _get(pod, "metadata", "labels") or {}
    for var in _get(container, "env") or []:
        name, value = _get(var, "name"), _get(var, "value")
        if value is None:
            path = _get(var, "value_from", "field_ref", "field_path")
            m = _LABEL_REF.match(path or "")
            value = labels.get(m.group(1)) if m else refs.get(path or "")
        if name and value is not None:
            out[str(name)] = str(value)
    return out


def _container(pod: Any) -> Any:
    containers = _get(pod, "spec", "containers") or []
    for c in containers:
        if any(_get(p, "name") in DEFAULT_PORTS for p in _get(c, "ports") or []):
            return c
    return containers[0] if containers else None


def _identity(pod: Any) -> dict[str, Any]:
    """Who and where the pod is: the fields every kind of pod the runner runs shares."""
    return {
        "uid": str(_get(pod, "metadata", "uid") or ""),
        "namespace": str(_get(pod, "metadata", "namespace")),
        "name": str(_get(pod, "metadata", "name")),
        "ip": str(_get(pod, "status", "pod_ip")),
        "node": str(_get(pod, "spec", "node_name") or ""),
        "labels": dict(_get(pod, "metadata", "labels") or {}),
    }


def parse_comparator(pod: Any, container: Any) -> TritonPod:
    """A `modelship compare` pod: its arguments, env, ports and ServiceAccount (the runner mints its token)."""
    ports = {"http": 8000, "metrics": 8002}
    for p in _get(container, "ports") or []:
        if _get(p, "name") in ports:
            ports[_get(p, "name")] = int(_get(p, "container_port"))
    return TritonPod(
        **_identity(pod),
        repository_uri="", models=(), version=None, ports=ports, env=_env(container, pod),
        comparator_args=tuple(str(a) for a in (_get(container, "args") or [])),
        service_account=str(_get(pod, "spec", "service_account_name") or "default"),
        lifecycle=parse_lifecycle(pod, container, ports),
    )


def parse_pod(pod: Any) -> TritonPod:
    """Read a candidate pod; problems are collected in ``errors`` (the runner logs and skips it)."""
    errors: list[str] = []
    c = _container(pod)
    if is_comparator([str(t) for t in _get(c, "command") or []]):
        return parse_comparator(pod, c)
    tokens = [str(t) for t in (_get(c, "command") or []) + (_get(c, "args") or [])]
    owned, rest = parse_flags(tokens)
    env = _env(c, pod)
    repos = owned.get("model-repository", []) + owned.get("model-store", [])
    if not repos:
        errors.append("no --model-repository in the container's command/args")
    elif len(repos) > 1:
        errors.append("several --model-repository flags; the stack serves only the first")
    ports = dict(DEFAULT_PORTS)
    for p in _get(c, "ports") or []:
        if _get(p, "name") in ports:
            ports[_get(p, "name")] = int(_get(p, "container_port"))
    for kind in DEFAULT_PORTS:
        if owned.get(f"{kind}-port"):
            ports[kind] = int(owned[f"{kind}-port"][-1])
    mode = (owned.get("model-control-mode") or ["none"])[-1]
    models = tuple(owned.get("load-model", []))
    if not models and env.get("MODELSHIP_MODEL_NAME"):
        models = (env["MODELSHIP_MODEL_NAME"],)
    version: int | None = None
    raw_version = env.get("MODELSHIP_MODEL_VERSION", "")
    if raw_version:
        try:
            version = int(raw_version)
        except ValueError:
            errors.append(f"MODELSHIP_MODEL_VERSION={raw_version!r} is not an integer version")
    lifecycle = Lifecycle()
    try:
        lifecycle = parse_lifecycle(pod, c, ports)
    except ValueError as exc:
        errors.append(f"probes and hooks: {exc}")
    return TritonPod(
        **_identity(pod),
        lifecycle=lifecycle,
        repository_uri=repos[0] if repos else "",
        models=models,
        version=version,
        ports=ports,
        env=env,
        passthrough=tuple(rest),
        control_mode=mode,
        errors=tuple(errors),
        ip_only=env.get(IP_ONLY[0]) == IP_ONLY[1],
    )


def resolve_repository(uri: str, repos_dir: Path, table: Mapping[str, str] | None = None) -> Path:
    """Map a repository URI to a local directory.

    ``file://PATH`` and absolute paths pass through; an exact entry of ``table`` wins next; otherwise
    the URI's last path segment names a directory of ``repos_dir`` if one exists, else ``main``
    (so ``s3://models/triton`` -> ``repos/main``, ``gs://b/renamed-output`` -> ``repos/renamed-output``).
    """
    if uri.startswith("file://"):
        return Path(uri[len("file://") :])
    if uri.startswith("/"):
        return Path(uri)
    if table and uri in table:
        return Path(table[uri])
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    if last and (repos_dir / last).is_dir():
        return repos_dir / last
    return repos_dir / "main"


def identity_env(pod: TritonPod) -> dict[str, str]:
    """Env the fault model matches rules on (who am I), from the pod and its modelship labels."""
    return {
        "MODELSHIP_POD_NAMESPACE": pod.namespace,
        "MODELSHIP_POD_NAME": pod.name,
        "MODELSHIP_DEPLOYMENT": pod.labels.get("modelship.dev/deployment", ""),
        "MODELSHIP_REVISION": pod.labels.get("modelship.dev/revision", ""),
        "MODELSHIP_ROLE": pod.labels.get("modelship.dev/role", ""),
    }
