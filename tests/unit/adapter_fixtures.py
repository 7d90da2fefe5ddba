"""Shared fakes for the adapter unit tests: an owner, specs and an in-memory Transport."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from modelship.adapters.kube import Kube, KubeError, Query
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.status import Revision


@dataclass(frozen=True)
class FakeOwner:
    namespace: str = "ml"
    name: str = "fraud-scorer"
    uid: str = "0c1d2e3f-uid"


OWNER = FakeOwner()
STABLE = Revision(version="6", hash="5d8f7c0000")
CANARY = Revision(version="7", hash="9ab12e0000")


def make_spec(**overrides: Any) -> ModelDeploymentSpec:
    raw: dict[str, Any] = {
        "model": {"name": "fraud_scorer", "version": "7", "repository": "s3://models/triton"},
        "serving": {
            "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
            "replicas": 4,
            "resources": {"gpus": 1, "cpu": "4", "memory": "16Gi"},
            "nodeSelector": {"gpu": "a100"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "env": [{"name": "OMP_NUM_THREADS", "value": "2"},
                    {"name": "MODELSHIP_MODEL_VERSION", "value": "1"}],
            "args": ["--log-verbose=1"],
        },
        "traffic": {"gatewayAPI": {"parentRefs": [{"name": "inference-gw", "namespace": "gateways"}],
                                   "hostnames": ["fraud.example.com"]}},
    }
    raw.update(overrides)
    return ModelDeploymentSpec.model_validate(raw)


@dataclass
class Call:
    method: str
    path: str
    query: Query
    body: Any
    content_type: str | None


@dataclass
class FakeTransport:
    """Records calls; GETs answer from `objects` (path -> object) and 404 otherwise."""

    objects: dict[str, Any] = field(default_factory=dict)
    lists: dict[str, list[Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)

    def request(
        self, method: str, path: str, *, query: Query | None = None, body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        self.calls.append(Call(method, path, list(query or []), copy.deepcopy(body), content_type))
        if method == "GET":
            if path in self.lists:
                return {"items": self.lists[path]}
            if path in self.objects:
                return copy.deepcopy(self.objects[path])
            raise KubeError(404, "NotFound", f"{path} not found")
        if method == "PATCH":
            self.objects[path] = copy.deepcopy(body)
            return body
        if method == "DELETE":
            if self.objects.pop(path, None) is None:
                raise KubeError(404, "NotFound", f"{path} not found")
            return {"kind": "Status", "status": "Success"}
        return body

    def writes(self) -> list[Call]:
        return [c for c in self.calls if c.method != "GET"]


def fake_kube(transport: FakeTransport | None = None) -> tuple[Kube, FakeTransport]:
    t = transport or FakeTransport()
    return Kube(t), t
