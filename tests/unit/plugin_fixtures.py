"""Sample ModelDeployments and a fake ClusterApi shared by the plugin's unit tests."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

from modelship.plugin.errors import PluginError

T0 = "2024-05-01T10:00:00Z"


def mdep(name: str = "fraud-scorer", namespace: str = "ml", **status: Any) -> dict[str, Any]:
    """A ModelDeployment at canary step 2/4 (25% for 10m), with status fields overridable."""
    base_status: dict[str, Any] = {
        "observedGeneration": 3,
        "phase": "Progressing",
        "stage": "Canary",
        "step": 1,
        "canaryWeight": 25,
        "mirrorPercent": 0,
        "stableRevision": {"version": "6", "hash": "5d8f7c"},
        "canaryRevision": {"version": "7", "hash": "9ab12e"},
        "message": "step 2/4: 25% for 10m; 3 checks passed",
        "stepStartedAt": "2024-05-01T10:10:00Z",
        "stageStartedAt": "2024-05-01T10:01:00Z",
        "consecutiveFailures": 1,
        "passedChecks": 3,
        "lastAnalysis": {
            "time": "2024-05-01T10:13:30Z",
            "verdict": "Fail",
            "requests": 1532,
            "metrics": [
                {"name": "errorRate", "value": 0.002, "max": 0.01, "verdict": "Pass"},
                {
                    "name": "latencyP99Ms",
                    "value": 310.5,
                    "stableValue": 150.0,
                    "max": 250,
                    "maxRatioToStable": 1.2,
                    "verdict": "Fail",
                    "message": "310.5 > 250",
                },
                {"name": "mean-confidence", "value": None, "min": 0.7, "verdict": "NoData"},
            ],
            "message": "1 of 3 SLOs failed",
        },
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "StableServing",
                "message": "v6 serves",
                "lastTransitionTime": T0,
            },
            {"type": "Progressing", "status": "True", "reason": "CanaryStep", "lastTransitionTime": T0},
        ],
        "history": [
            {
                "revision": "9ab12e",
                "version": "7",
                "event": "Started",
                "stage": "Validating",
                "by": "modelship",
                "time": "2024-05-01T10:00:30Z",
                "reason": "spec.model.version 6 -> 7",
            },
            {
                "revision": "9ab12e",
                "version": "7",
                "event": "StageChanged",
                "stage": "Canary",
                "by": "modelship",
                "time": "2024-05-01T10:10:00Z",
                "reason": "step 1 passed: errorRate 0.001 <= 0.01",
            },
        ],
    }
    base_status.update(status)
    return {
        "apiVersion": "modelship.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "generation": 3,
            "creationTimestamp": T0,
            "resourceVersion": "100",
            "annotations": {},
        },
        "spec": {
            "model": {"name": "fraud_scorer", "version": "7", "repository": "s3://models/triton"},
            "rollout": {
                "shadow": {"mirrorPercent": 100, "duration": "10m"},
                "canary": {
                    "steps": [
                        {"weight": 5, "duration": "5m"},
                        {"weight": 25, "duration": "10m"},
                        {"approval": {}},
                        {"weight": 50, "duration": "10m"},
                    ]
                },
                "analysis": {"failureLimit": 2},
            },
        },
        "status": base_status,
    }


class FakeApi:
    """In-memory ClusterApi: records patches; `after_patch` lets a test play the operator's reaction."""

    def __init__(
        self, *objects: dict[str, Any], user: str = "alice@example.com", namespace: str = "ml"
    ) -> None:
        self.objects = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects}
        self.user = user
        self.patches: list[tuple[str, str, dict[str, str]]] = []
        self.operator_handles = True
        self.ignore_reason: str | None = None
        self._namespace = namespace

    @property
    def default_namespace(self) -> str:
        return self._namespace

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) not in self.objects:
            raise PluginError(
                f"modeldeployment {namespace}/{name} not found; "
                f"list them with kubectl modelship get -n {namespace}"
            )
        return copy.deepcopy(self.objects[(namespace, name)])

    def list(self, namespace: str | None) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (ns, _), o in self.objects.items() if namespace in (None, ns)]

    def patch_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> dict[str, Any]:
        self.patches.append((namespace, name, dict(annotations)))
        obj = self.objects[(namespace, name)]
        obj["metadata"].setdefault("annotations", {}).update(annotations)
        return copy.deepcopy(obj)

    def whoami(self) -> str:
        return self.user

    def watch(self, namespace: str, name: str, timeout_s: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield the current object, then (if the fake operator handles requests) the handled one."""
        yield self.get(namespace, name)
        if not self.operator_handles:
            return
        obj = self.objects[(namespace, name)]
        request = json.loads(obj["metadata"]["annotations"]["modelship.dev/request"])
        obj["status"]["lastRequestId"] = request["id"]
        obj["status"]["message"] = f"{request['action']} handled"
        entry = {
            "revision": "9ab12e",
            "version": "7",
            "event": "Approved",
            "by": obj["metadata"]["annotations"]["modelship.dev/requested-by"],
            "request": request["id"],
            "time": "2024-05-01T10:20:00Z",
            "reason": "manual promote",
        }
        if self.ignore_reason:
            entry.update(event="RequestIgnored", outcome="Ignored", reason=self.ignore_reason)
        obj["status"]["history"].append(entry)
        yield self.get(namespace, name)
