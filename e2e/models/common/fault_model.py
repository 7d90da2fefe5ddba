"""Fault-injecting fraud scorer shared by every version of every test repository.

Why one implementation: tests need revisions that are healthy, slow, failing or unloadable, and
they must be able to flip that *while traffic flows*. Behaviour is resolved per request from three
layers, later ones winning:

1. ``behavior.json`` next to the version's ``model.py`` (the version's default personality);
2. environment of the serving process (``MODELSHIP_FAULT_ERROR_RATE``, ``MODELSHIP_FAULT_LATENCY_MS``,
   ``MODELSHIP_FAULT_JITTER_MS``, ``MODELSHIP_FAULT_FAIL_LOAD``), i.e. the pod's container env;
3. the live fault file named by ``MODELSHIP_FAULT_FILE`` (re-read when its mtime changes): either a
   flat object applied to everyone, or ``{"rules": [{"match": {...}, "error_rate": ...}, ...]}``
   where ``match`` may name ``namespace``, ``pod``, ``deployment``, ``revision``, ``role``, ``model``
   and ``version``; every matching rule is applied in order.

Silently wrong answers (no error, normal latency: what only output comparison catches) come from ``answer``:
``shifted`` adds 2.5 to every logit (scores pushed towards 1), ``constant`` answers 0.5 whatever the input,
``swapped`` reads the input features in reverse order (a pipeline that swapped columns); default ``model``.

Errors are raised as ``pb_utils.TritonModelException`` because Triton 2.51 counts an
``InferenceResponse(error=...)`` as a *success* in ``nv_inference_request_success``.
Output name and datatype come from the model config, so the incompatible repositories
(``renamed-output``, ``fp64-output``) share this code.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # provided by the Python backend stub

_ENV_KEYS = {
    "error_rate": "MODELSHIP_FAULT_ERROR_RATE",
    "latency_ms": "MODELSHIP_FAULT_LATENCY_MS",
    "jitter_ms": "MODELSHIP_FAULT_JITTER_MS",
    "fail_load": "MODELSHIP_FAULT_FAIL_LOAD",
}
_IDENTITY_ENV = {
    "namespace": "MODELSHIP_POD_NAMESPACE",
    "pod": "MODELSHIP_POD_NAME",
    "deployment": "MODELSHIP_DEPLOYMENT",
    "revision": "MODELSHIP_REVISION",
    "role": "MODELSHIP_ROLE",
}
_NUMERIC = ("error_rate", "latency_ms", "jitter_ms")


def _env_overrides() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, var in _ENV_KEYS.items():
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        out[key] = raw.lower() in ("1", "true", "yes") if key == "fail_load" else float(raw)
    return out


class _FaultFile:
    """Caches the parsed fault file and re-reads it only when its mtime or size changes."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._stamp: tuple[float, int] | None = None
        self._data: Any = None

    def load(self) -> Any:
        if not self.path:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._data = None, None
            return None
        stamp = (st.st_mtime, st.st_size)
        if stamp != self._stamp:
            try:
                with open(self.path, encoding="utf-8") as fh:
                    self._data = json.load(fh)
                self._stamp = stamp
            except (OSError, ValueError):
                return self._data  # half-written file: keep the previous view, retry next request
        return self._data


def _matching_overrides(data: Any, identity: dict[str, str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    rules = data.get("rules")
    if rules is None:
        return {k: v for k, v in data.items() if k != "match"}
    out: dict[str, Any] = {}
    for rule in rules:
        match = rule.get("match", {})
        if all(str(identity.get(k, "")) == str(v) for k, v in match.items()):
            out.update({k: v for k, v in rule.items() if k != "match"})
    return out


SHIFT_LOGIT = 2.5


def _answer(kind: Any, x: Any, weights: Any, bias: float) -> list[float]:
    """Scores for a batch: the model's, or a silently wrong variant (see the module docstring)."""
    if kind == "constant":
        return [0.5] * len(x)
    if kind == "swapped":
        x = x[:, ::-1]
    logits = x @ weights + bias + (SHIFT_LOGIT if kind == "shifted" else 0.0)
    return [1.0 / (1.0 + math.exp(-v)) for v in logits]


class TritonPythonModel:
    """Scores x (FP32 [-1,4]) with a per-version logistic model; injects faults on demand."""

    def initialize(self, args: dict[str, str]) -> None:
        self.model_config = json.loads(args["model_config"])
        self.version = str(args["model_version"])
        version_dir = os.path.join(args["model_repository"], self.version)
        self.defaults: dict[str, Any] = {"weights": [0.4, 0.3, 0.2, 0.1], "bias": 0.0}
        behavior_path = os.path.join(version_dir, "behavior.json")
        if os.path.exists(behavior_path):
            with open(behavior_path, encoding="utf-8") as fh:
                self.defaults.update(json.load(fh))
        self.env = _env_overrides()
        self.identity = {k: os.environ.get(v, "") for k, v in _IDENTITY_ENV.items()}
        self.identity.update(model=args["model_name"], version=self.version)
        self.fault_file = _FaultFile(os.environ.get("MODELSHIP_FAULT_FILE"))
        if self._behavior().get("fail_load"):
            raise pb_utils.TritonModelException(f"fault injection: version {self.version} refuses to load")
        out = self.model_config["output"][0]
        self.output_name = out["name"]
        self.output_dtype = pb_utils.triton_string_to_numpy(out["data_type"])
        self.weights = np.asarray(self.defaults["weights"], dtype=np.float64)
        self.bias = float(self.defaults["bias"])

    def _behavior(self) -> dict[str, Any]:
        merged = dict(self.defaults)
        merged.update(self.env)
        merged.update(_matching_overrides(self.fault_file.load(), self.identity))
        for key in _NUMERIC:
            merged[key] = float(merged.get(key, 0.0) or 0.0)
        return merged

    def execute(self, requests: list[Any]) -> list[Any]:
        behavior = self._behavior()
        delay_ms = behavior["latency_ms"] + random.uniform(0.0, behavior["jitter_ms"])
        if delay_ms > 0:
            time.sleep(delay_ms / 1000.0)
        if behavior["error_rate"] > 0 and random.random() < behavior["error_rate"]:
            raise pb_utils.TritonModelException(
                f"fault injection: version {self.version} failed (error_rate={behavior['error_rate']})"
            )
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy().astype(np.float64)
            score = np.array([[v] for v in _answer(behavior.get("answer"), x, self.weights, self.bias)],
                             dtype=self.output_dtype)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(self.output_name, score)]))
        return responses

    def finalize(self) -> None:
        """Nothing to release: the model holds no external resources."""
