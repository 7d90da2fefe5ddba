"""The example manifests parse and validate; defaults are what the docs promise."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from modelship.cli import main
from modelship.domain.api import API_VERSION, KIND, ModelDeploymentSpec
from modelship.domain.validation import check_manifest, parse_spec

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict)
    return doc


def test_there_are_examples() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"fraud-scorer.yaml", "istio.yaml", "replica-ratio.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_parses_without_problems(path: Path) -> None:
    doc = load(path)
    assert doc["apiVersion"] == API_VERSION and doc["kind"] == KIND
    assert check_manifest(doc) == []
    spec = parse_spec(doc["spec"])
    assert isinstance(spec, ModelDeploymentSpec)
    # round trip: what the operator would write back parses to the same spec
    again = parse_spec(spec.model_dump(mode="json", by_alias=True, exclude_none=True))
    assert again == spec


def test_fraud_scorer_example() -> None:
    spec = parse_spec(load(ROOT / "examples" / "fraud-scorer.yaml")["spec"])
    assert isinstance(spec, ModelDeploymentSpec)
    assert spec.traffic.kind == "gatewayAPI"
    assert spec.rollout.shadow is not None and spec.rollout.shadow.mirror_percent == 100
    assert [s.approval is not None for s in spec.rollout.canary.steps] == [False, False, True, False]
    assert spec.slo.latency_p99_ms is not None and spec.slo.latency_p99_ms.max_ratio_to_stable == 1.2


def test_router_kinds() -> None:
    specs = {p.name: parse_spec(load(p)["spec"]) for p in EXAMPLES}
    kinds = {name: spec.traffic.kind for name, spec in specs.items() if isinstance(spec, ModelDeploymentSpec)}
    assert kinds["istio.yaml"] == "istio" and kinds["replica-ratio.yaml"] == "none"


def test_minimal_spec_defaults() -> None:
    spec = parse_spec({"model": {"name": "m", "version": "1", "repository": "s3://r"}})
    assert isinstance(spec, ModelDeploymentSpec)
    assert spec.traffic.kind == "none"
    assert spec.serving.replicas == 1 and spec.serving.resources.gpus == 1
    assert spec.serving.image.startswith("nvcr.io/nvidia/tritonserver:")
    assert [(s.weight, s.duration) for s in spec.rollout.canary.steps] == [(10, "5m")]
    analysis = spec.rollout.analysis
    assert (analysis.interval, analysis.failure_limit, analysis.min_requests) == ("1m", 2, 100)
    assert (analysis.on_no_data, analysis.on_metrics_unavailable) == ("Hold", "Hold")
    assert (spec.rollout.progress_deadline, spec.rollout.scale_down_delay, spec.rollout.gpu_surge) == (
        "15m",
        "30s",
        "Allow",
    )
    assert spec.validation.contract == "Strict" and spec.validation.samples == []
    assert spec.rollout.shadow is None and spec.slo.custom == []


def test_cli_validate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", *map(str, EXAMPLES)]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        yaml.safe_dump(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": "b"},
                "spec": {"model": {"name": "m", "version": 3, "repository": "r"}},
            }
        )
    )
    assert main(["validate", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "spec.model.version: must be a string" in out
