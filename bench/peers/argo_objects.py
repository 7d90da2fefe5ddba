"""The objects the Argo Rollouts bench creates: its own kwok nodes, the Rollouts, and the CRDs.

Why its own nodes: the stack's two GPU nodes hold 110 pods each and serve other people's e2e scenarios; 1,000
Rollouts need 1,000 pods settled and 2,000 mid-rollout. The bench adds kwok nodes (kwok makes their pods Ready
without running anything) that only its pods can use: a taint keeps everyone else's pods off, a label and a
toleration put the bench's pods on. Their pod CIDRs (10.78.x.0/20) lie outside the data plane's routed pod
network (10.77.0.0/16), and the pods carry no `app.kubernetes.io/managed-by: modelship` label, so the
stack's pod runner starts no Triton for them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench import kwok_nodes
from e2e.stack import StackContext

NODE_LABEL = "modelship.dev/bench-peer"
NODES = 2
STEP_ENV = "MODEL_VERSION"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, flag: str = "--pause") -> float:
    """'30s', '2m', '90' (seconds) -> seconds; anything else is refused with the flag's name and a fix."""
    match = _DURATION.match(text.strip())
    if not match:
        raise SystemExit(f"{flag}: {text!r} is not a duration; write e.g. 30s, 2m or 90 (seconds)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]


def go_duration(seconds: float) -> str:
    """Seconds as Argo's pause duration string ('30s'; whole seconds, as the CRD's examples)."""
    return f"{round(seconds)}s"


def canary_steps(pause_seconds: float) -> list[dict[str, Any]]:
    """The Modelship bench's canary (10% for D, 50% for D, then promote) in Argo's step language."""
    pause = {"pause": {"duration": go_duration(pause_seconds)}}
    return [{"setWeight": 10}, pause, {"setWeight": 50}, pause]


def pause_steps(steps: list[dict[str, Any]]) -> frozenset[int]:
    return frozenset(i for i, step in enumerate(steps) if "pause" in step)


ANALYSIS_TEMPLATE = "slo"


def analysis_template(namespace: str, prometheus_url: str, interval_seconds: float) -> dict[str, Any]:
    """The Modelship bench's SLO checks in Argo's language: every `interval`, the canary's error rate, p99
    latency and request count from Prometheus (the bench's stand-in answers each with a passing value:
    bench/standins.py `answer`), two failures allowed, as the fleet's `failureLimit: 2`, `minRequests: 100`."""
    selector = 'namespace="{{args.namespace}}",model="{{args.model}}",modelship_dev_revision="canary"'
    requests = f"sum(increase(nv_inference_request_success{{{selector}}}[1m]))"
    metrics = [
        ("error-rate", f"sum(increase(nv_inference_request_failure{{{selector}}}[1m])) / {requests}",
         "result[0] <= 0.01"),
        ("latency-p99", f'max(nv_inference_request_summary_us{{{selector},quantile="0.99"}}) / 1000',
         "result[0] <= 500"),
        ("requests", requests, "result[0] >= 100"),
    ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": ANALYSIS_TEMPLATE, "namespace": namespace},
        "spec": {
            "args": [{"name": "namespace"}, {"name": "model"}],
            "metrics": [{
                "name": name,
                "interval": go_duration(interval_seconds),
                "failureLimit": 2,
                "successCondition": condition,
                "provider": {"prometheus": {"address": prometheus_url, "query": query}},
            } for name, query, condition in metrics],
        },
    }


def background_analysis(name: str, namespace: str) -> dict[str, Any]:
    """The canary's background analysis from its first step to promotion, as Modelship checks every step."""
    return {"templates": [{"templateName": ANALYSIS_TEMPLATE}],
            "args": [{"name": "namespace", "value": namespace}, {"name": "model", "value": name}]}


def rollout_manifest(name: str, namespace: str, node_value: str, pause_seconds: float,
                     version: str = "1", analysis: bool = False) -> dict[str, Any]:
    """One basic-canary Rollout (no traffic router: replica ratio, like Modelship's `traffic: {none: {}}`),
    with the SLO checks of `analysis_template` as background analysis when `analysis`."""
    labels = {"app": name, NODE_LABEL: node_value}
    canary: dict[str, Any] = {"steps": canary_steps(pause_seconds)}
    if analysis:
        canary["analysis"] = background_analysis(name, namespace)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace, "labels": {NODE_LABEL: node_value}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {NODE_LABEL: node_value},
                    "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [container(version)],
                },
            },
            "strategy": {"canary": canary},
        },
    }


def container(version: str) -> dict[str, Any]:
    """The Rollout's one container; `version` is an env value, so a new one is a new pod template."""
    return {
        "name": "model",
        "image": "bench.invalid/model:1",  # never pulled: kwok runs nothing
        "env": [{"name": STEP_ENV, "value": version}],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "10m", "memory": "16Mi"}},
    }


def new_version_patch(version: str) -> dict[str, Any]:
    """A merge patch giving the pod template a new env value: a new revision to roll out.

    The whole container goes in: a merge patch replaces lists (custom resources have no strategic merge), so
    a container with only `env` would drop the image and Argo would refuse the Rollout as InvalidSpec.
    """
    return {"spec": {"template": {"spec": {"containers": [container(version)]}}}}


def node_manifests(run_id: str, objects: int) -> list[dict[str, Any]]:
    """kwok nodes only the bench's pods land on, with room for every pod of a rollout in flight."""
    capacity = {"cpu": "64", "memory": "256Gi", "pods": str(2 * objects + 100)}
    return kwok_nodes.node_manifests(NODE_LABEL, run_id, [f"10.78.{16 * i}.0/20" for i in range(NODES)], capacity)


def create_nodes(stack: StackContext, run_id: str, objects: int, timeout: float = 60.0) -> list[str]:
    """Create the bench's nodes and wait until kwok reports them Ready."""
    return kwok_nodes.create_nodes(stack, NODE_LABEL, run_id, node_manifests(run_id, objects), timeout)


def delete_nodes(stack: StackContext, run_id: str) -> None:
    kwok_nodes.delete_nodes(stack, NODE_LABEL, run_id)


def install_crds(stack: StackContext, crds_dir: Path) -> list[str]:
    """Apply the Rollouts CRDs server-side (idempotent; they are too big for client-side apply's annotation)."""
    files = sorted(crds_dir.glob("*.yaml"))
    if not files:
        raise SystemExit(f"no CRD files in {crds_dir}; rebuild with e2e/stack/build-argo-rollouts.sh")
    for path in files:
        stack.run_kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=modelship-bench",
                          "-f", str(path))
    for path in files:
        stack.run_kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(path))
    return [path.name for path in files]
