"""The CRD and API reference are generated from the models; the committed copies must match them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelship.cli import main
from modelship.domain.crd import crd, crd_yaml, resource_schema
from modelship.domain.reference import reference_markdown

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "is stale: run `make generate` (modelship crds > crds/...; modelship docs > docs/...)"
STRUCTURAL_KEYS = {
    "description",
    "type",
    "format",
    "enum",
    "default",
    "required",
    "properties",
    "items",
    "additionalProperties",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "maxProperties",
    "pattern",
    "x-kubernetes-validations",
    "x-kubernetes-preserve-unknown-fields",
}


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_committed_crd_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds"]) == 0
    printed = capsys.readouterr().out
    committed = (ROOT / "crds" / "modeldeployments.yaml").read_text()
    assert committed == printed, f"crds/modeldeployments.yaml {REGENERATE}"


def test_committed_reference_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["docs"]) == 0
    printed = capsys.readouterr().out
    committed = (ROOT / "docs" / "api-reference.md").read_text()
    assert committed == printed, f"docs/api-reference.md {REGENERATE}"


def test_output_is_deterministic() -> None:
    assert crd_yaml() == crd_yaml()
    assert reference_markdown() == reference_markdown()
    assert "&id" not in crd_yaml() and "*id" not in crd_yaml()  # no YAML anchors


def test_every_property_is_described() -> None:
    missing = [
        path
        for path, node in walk(resource_schema())
        for name in node.get("properties", {})
        if not node["properties"][name].get("description") and f"{path}.{name}" != ".metadata"
    ]
    assert not missing, f"properties without description (kubectl explain would show nothing): {missing}"


def test_schema_is_structural() -> None:
    for path, node in walk(resource_schema()):
        assert set(node) <= STRUCTURAL_KEYS, f"{path}: unexpected keys {set(node) - STRUCTURAL_KEYS}"
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path} has no type"
        if "properties" in node:
            assert node["type"] == "object" and "additionalProperties" not in node, path
        for field in node.get("required", []):
            assert field in node["properties"], f"{path}: required {field} is not a property"


def test_strings_and_lists_under_cel_rules_are_bounded() -> None:
    """CEL cost estimation needs a bound on every list and string a rule can iterate over."""
    for path, node in walk(resource_schema()["properties"]["spec"]):
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} needs maxItems"


def test_resource_identity_and_columns() -> None:
    obj = crd()
    spec = obj["spec"]
    assert obj["metadata"]["name"] == "modeldeployments.modelship.dev"
    assert spec["names"]["shortNames"] == ["mdep"] and spec["scope"] == "Namespaced"
    assert "modelship" in spec["names"]["categories"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Model"] == ".spec.model.name"
    assert columns["Desired"] == ".spec.model.version"
    assert columns["Stable"] == ".status.stableRevision.version"
    assert columns["Weight"] == ".status.canaryWeight"
    assert {"Stage", "Phase", "Age"} <= set(columns)
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["required"] == ["spec"]
    assert schema["properties"]["spec"]["required"] == ["model"]


def test_cel_rules_are_carried() -> None:
    spec = resource_schema()["properties"]["spec"]["properties"]
    traffic_rules = [r["rule"] for r in spec["traffic"]["x-kubernetes-validations"]]
    assert any("has(self.gatewayAPI)" in r for r in traffic_rules)
    step = spec["rollout"]["properties"]["canary"]["properties"]["steps"]["items"]
    messages = [r["message"] for r in step["x-kubernetes-validations"]]
    assert "an approval step takes no duration" in messages
    assert step["properties"]["approval"] == {
        "description": step["properties"]["approval"]["description"],
        "type": "object",
    }  # `{}` accepted, nothing else kept


def test_defaults_match_the_models() -> None:
    spec = resource_schema()["properties"]["spec"]["properties"]
    assert spec["traffic"]["default"] == {"none": {}}
    analysis = spec["rollout"]["properties"]["analysis"]
    assert analysis["default"] == {} and analysis["properties"]["interval"]["default"] == "1m"
    assert "default" not in spec["model"]
    status = resource_schema()["properties"]["status"]
    assert all("default" not in node for _, node in walk(status)), "status is never defaulted by the server"


def test_crd_yaml_parses_back() -> None:
    assert yaml.safe_load(crd_yaml()) == crd()
