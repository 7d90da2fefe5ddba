"""The generated CRD on the real API server (e2e/stack): CEL rules refuse bad manifests naming the field.

Every manifest goes through ``kubectl apply --dry-run=server``: full admission (schema, defaulting, CEL,
strict field validation) without storing anything, so no operator acts on it. Each refusal is also checked
against ``modelship.domain.validation``, which must name the same field: the operator and the API server
agree on what is invalid.
"""

from __future__ import annotations

import copy
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelship.domain.validation import check_manifest

from e2e.stack import REPO, StackContext

pytestmark = pytest.mark.integration

EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
GOOD = yaml.safe_load((REPO / "examples" / "fraud-scorer.yaml").read_text())
Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def namespace(stack: StackContext) -> Iterator[str]:
    stack.run_kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=modelship-stack",
        "-f",
        str(REPO / "crds" / "modeldeployments.yaml"),
    )
    stack.run_kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/modeldeployments.modelship.dev")
    name = f"crd-test-{uuid.uuid4().hex[:6]}"
    stack.run_kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        stack.run_kubectl("delete", "namespace", name, "--wait=false", check=False)


def dry_run(stack: StackContext, doc: dict[str, Any], namespace: str) -> subprocess.CompletedProcess[str]:
    doc = copy.deepcopy(doc)
    doc["metadata"]["namespace"] = namespace
    return subprocess.run(
        [
            str(stack.kubectl),
            f"--kubeconfig={stack.kubeconfig}",
            "apply",
            "--dry-run=server",
            "-o",
            "yaml",
            "-f",
            "-",
        ],
        input=yaml.safe_dump(doc),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_are_accepted(stack: StackContext, namespace: str, path: Path) -> None:
    proc = dry_run(stack, yaml.safe_load(path.read_text()), namespace)
    assert proc.returncode == 0, proc.stderr


def test_server_applies_the_models_defaults(stack: StackContext, namespace: str) -> None:
    doc = {
        "apiVersion": "modelship.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "minimal"},
        "spec": {"model": {"name": "m", "version": "1", "repository": "s3://r"}},
    }
    proc = dry_run(stack, doc, namespace)
    assert proc.returncode == 0, proc.stderr
    spec = yaml.safe_load(proc.stdout)["spec"]
    assert spec["traffic"] == {"none": {}}
    assert spec["rollout"]["analysis"]["interval"] == "1m"
    assert spec["rollout"]["canary"]["steps"] == [{"weight": 10, "duration": "5m"}]
    assert spec["serving"]["resources"] == {"gpus": 1, "cpu": "2", "memory": "8Gi"}


def _steps(*steps: dict[str, Any]) -> Mutation:
    return lambda spec: spec["rollout"]["canary"].__setitem__("steps", list(steps))


def _set(dotted: str, value: Any) -> Mutation:
    def mutate(spec: dict[str, Any]) -> None:
        *parents, last = dotted.split(".")
        node = spec
        for key in parents:
            node = node[key]
        node[last] = value

    return mutate


# (id, mutation, field the API server names, words of its message, path validation.py names)
CASES: list[tuple[str, Mutation, str, str, str]] = [
    (
        "two routers",
        _set("traffic", {"istio": {}, "none": {}}),
        "spec.traffic",
        "exactly one",
        "spec.traffic",
    ),
    (
        "decreasing weights",
        _steps({"weight": 50, "duration": "10m"}, {"weight": 25, "duration": "10m"}),
        "spec.rollout.canary.steps",
        "strictly increase",
        "spec.rollout.canary.steps[1].weight",
    ),
    (
        "approval with duration",
        _steps({"weight": 5, "duration": "10m"}, {"approval": {}, "duration": "5m"}),
        "spec.rollout.canary.steps[1]",
        "approval step takes no duration",
        "spec.rollout.canary.steps[1].duration",
    ),
    (
        "weight without duration",
        _steps({"weight": 5}),
        "spec.rollout.canary.steps[0]",
        "needs a duration",
        "spec.rollout.canary.steps[0].duration",
    ),
    (
        "empty step",
        _steps({"weight": 5, "duration": "10m"}, {}),
        "spec.rollout.canary.steps[1]",
        "exactly one of weight",
        "spec.rollout.canary.steps[1]",
    ),
    (
        "shadow shorter than interval",
        _set("rollout.shadow", {"duration": "30s"}),
        "spec.rollout.shadow.duration",
        "at least analysis.interval",
        "spec.rollout.shadow.duration",
    ),
    (
        "deadline too short",
        _set("rollout.progressDeadline", "1m"),
        "spec.rollout.progressDeadline",
        "analysis.interval x analysis.failureLimit",
        "spec.rollout.progressDeadline",
    ),
    (
        "zero duration",
        _set("rollout.scaleDownDelay", "0s"),
        "spec.rollout.scaleDownDelay",
        "longer than zero",
        "spec.rollout.scaleDownDelay",
    ),
    (
        "bad duration",
        _set("rollout.scaleDownDelay", "soon"),
        "spec.rollout.scaleDownDelay",
        "should match",
        "spec.rollout.scaleDownDelay",
    ),
    (
        "weight above 100",
        _steps({"weight": 150, "duration": "10m"}),
        "spec.rollout.canary.steps[0].weight",
        "less than or equal to 100",
        "spec.rollout.canary.steps[0].weight",
    ),
    (
        "unquoted version",
        _set("model.version", 7),
        "spec.model.version",
        "must be of type string",
        "spec.model.version",
    ),
    (
        "empty latency bound",
        _set("slo.latencyP95Ms", {}),
        "spec.slo.latencyP95Ms",
        "set max, maxRatioToStable",
        "spec.slo.latencyP95Ms",
    ),
    (
        "custom without namespace",
        _set("slo.custom", [{"name": "c", "query": "up", "min": 1}]),
        "spec.slo.custom[0].query",
        'namespace="{{namespace}}"',
        "spec.slo.custom[0].query",
    ),
    (
        "custom names twice",
        _set("slo.custom", [{"name": "c", "query": 'up{namespace="{{namespace}}"}', "min": 1}] * 2),
        "spec.slo.custom",
        "unique",
        "spec.slo.custom[1].name",
    ),
    (
        "toleration exists with value",
        _set("serving.tolerations", [{"key": "k", "operator": "Exists", "value": "v"}]),
        "spec.serving.tolerations[0]",
        "takes no value",
        "spec.serving.tolerations[0].value",
    ),
    (
        "shadow without a mirroring router",
        _set("traffic", {"none": {}}),
        "spec.rollout.shadow",
        "cannot mirror",
        "spec.rollout.shadow",
    ),
    (
        "unknown field",
        _set("rollout.canary.stepz", []),
        "stepz",
        "unknown field",
        "spec.rollout.canary.stepz",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_manifest_is_refused_naming_the_field(
    stack: StackContext, namespace: str, case: tuple[str, Mutation, str, str, str]
) -> None:
    _, mutate, field, words, local_path = case
    doc = copy.deepcopy(GOOD)
    doc["metadata"]["name"] = "bad"
    mutate(doc["spec"])
    proc = dry_run(stack, doc, namespace)
    assert proc.returncode != 0, f"accepted: {proc.stdout}"
    lines = [line for line in proc.stderr.splitlines() if field in line and words in line]
    assert lines, proc.stderr
    local = check_manifest(doc)
    assert any(p.path == local_path for p in local), [str(p) for p in local]


def test_kubectl_explain_teaches_the_api(stack: StackContext, namespace: str) -> None:
    text = stack.run_kubectl("explain", "modeldeployment.spec.rollout")
    assert "Shadow and canary stages and guard rails" in text
    assert "progressDeadline" in text and "gpuSurge" in text
    steps = stack.run_kubectl("explain", "mdep.spec.rollout.canary.steps.approval")
    assert "kubectl modelship promote" in steps


def _at_every_bound() -> dict[str, Any]:
    """A valid manifest with every list full and every string at its longest (tests/unit/test_spec_limits.py
    bounds the JSON of such a spec)."""
    query = 'avg(model_confidence{namespace="{{namespace}}",revision="{{revision}}"})'
    def tensor(i: int) -> dict[str, Any]:
        return {"name": f"{i}" + "x" * 127, "datatype": "FP32", "shape": [1, 64], "data": [0.123456789] * 64}

    return {
        "apiVersion": "modelship.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "m" * 52},
        "spec": {
            "model": {"name": "m" * 128, "version": "9" * 19, "repository": "s3://" + "r" * 1019},
            "serving": {
                "image": "i" * 1024,
                "nodeSelector": {f"{'p' * 241}{i:02d}.example/{'k' * 61}{i:02d}": "v" * 63 for i in range(16)},
                "tolerations": [{"key": f"k{i}", "operator": "Equal", "value": "v" * 63} for i in range(16)],
                "env": [{"name": f"V{i}{'_' * 120}", "value": "é" * 64} for i in range(64)],
                "args": [f"--a{i}=" + "x" * 250 for i in range(32)],
            },
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "g" * 253, "namespace": "n" * 63}] * 8,
                                       "hostnames": ["h" * 63 + ".example.com"] * 16}},
            "rollout": {"canary": {"steps": [{"weight": i + 1, "duration": "719h59m59s"} for i in range(20)]},
                        "analysis": {"interval": "1h", "failureLimit": 100},
                        "progressDeadline": "720h", "scaleDownDelay": "720h"},
            "slo": {"custom": [{"name": f"c{i}", "query": query + " " * (1024 - len(query)), "min": -1e300,
                                "max": 1e300} for i in range(16)]},
            "validation": {"samples": [{"name": "s" * 63, "inputs": [tensor(0), tensor(1)]} for _ in range(8)]},
        },
    }


def test_a_spec_at_every_bound_is_admitted_and_valid(stack: StackContext, namespace: str) -> None:
    """The API server's bounds (and CEL cost budgets) and the operator's agree on the largest valid spec."""
    doc = _at_every_bound()
    assert check_manifest(doc) == []
    proc = dry_run(stack, doc, namespace)
    assert proc.returncode == 0, proc.stderr[:2000]
