"""ModelDeployment manifests for scenarios: short analysis cadence so a whole rollout fits in a minute."""

from __future__ import annotations

import copy
from typing import Any

from e2e.stack import REPO
from e2e.stack.routes import STACK_GATEWAY as GATEWAY

MODEL_REPOS = REPO / "e2e" / "models" / "repos"


def repository(variant: str = "main") -> str:
    """A model repository URI the stack's pod runner serves (file:// passes straight through)."""
    return f"file://{MODEL_REPOS / variant}"


SAMPLE = {
    "name": "smoke",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.1, 0.2, 0.3, 0.4]}],
    "expect": {"outputs": [{"name": "score", "datatype": "FP32", "shape": [1, 1]}]},
}


def stack_gateway_route(name: str, namespace: str) -> dict[str, Any]:
    """``traffic.gatewayAPI`` through the stack's Traefik (``gateways/inference-gw``): a hostname per
    ModelDeployment, since every route shares the one listener, and ``mirror: External``, since Traefik has no
    RequestMirror (the generator makes the shadow copy; e2e/README-dataplane.md)."""
    return {
        "parentRefs": [{"name": GATEWAY[1], "namespace": GATEWAY[0]}],
        "hostnames": [f"{name}.{namespace}.models.test"],
        "mirror": "External",
    }


def model_deployment(
    name: str,
    namespace: str,
    version: str,
    *,
    variant: str = "main",
    replicas: int = 1,
    gpus: int = 1,
    router: str = "gatewayAPI",
    shadow: dict[str, Any] | None = None,
    steps: list[dict[str, Any]] | None = None,
    analysis: dict[str, Any] | None = None,
    slo: dict[str, Any] | None = None,
    progress_deadline: str = "60s",
    scale_down_delay: str = "3s",
    gpu_surge: str = "Allow",
    samples: bool = True,
    env: dict[str, str] | None = None,
    post_promotion: dict[str, Any] | None = None,
    notifications: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A complete manifest with e2e-friendly timings; every keyword maps to one spec field."""
    traffic: dict[str, Any] = {
        "gatewayAPI": stack_gateway_route(name, namespace),
        "istio": {"hosts": [f"{name}.{namespace}.svc.cluster.local"]},
        "none": {},
    }[router] if router in ("gatewayAPI", "istio", "none") else {}
    rollout: dict[str, Any] = {
        "canary": {"steps": steps or [{"weight": 20, "duration": "8s"}, {"weight": 50, "duration": "8s"}]},
        "analysis": {"interval": "4s", "failureLimit": 2, "minRequests": 5, **(analysis or {})},
        "progressDeadline": progress_deadline,
        "scaleDownDelay": scale_down_delay,
        "gpuSurge": gpu_surge,
    }
    if post_promotion is not None:
        rollout["postPromotion"] = post_promotion
    if shadow is not None:
        # Output comparison is on by default; a scenario that is not about it keeps it off (no comparator pod,
        # no outputShift to wait for), and one that is sets `compare` itself.
        rollout["shadow"] = {"compare": {"enabled": False}, **shadow}
    spec: dict[str, Any] = {
        "model": {"name": "fraud_scorer", "version": version, "repository": repository(variant)},
        "serving": {
            "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
            "replicas": replicas,
            "resources": {"gpus": gpus, "cpu": "1", "memory": "1Gi"},
            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
        },
        "traffic": {router: traffic},
        "rollout": rollout,
        "slo": copy.deepcopy(slo) if slo is not None else {"errorRate": {"max": 0.05}, "latencyP99Ms": {"max": 200}},
        "validation": {"contract": "Strict", "samples": [SAMPLE] if samples else []},
    }
    if notifications is not None:
        spec["notifications"] = notifications
    return {
        "apiVersion": "modelship.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
