"""The ModelDeployment CustomResourceDefinition, generated from the pydantic API models (one source of truth).

pydantic's JSON Schema (draft 2020-12) is turned into a *structural* OpenAPI v3 schema as the API server
requires: `$ref`s inlined, `anyOf [X, null]` folded into a plain optional X (the API server prunes a null like
an absent field, which is what the models' `None` means; kopf's merge patches use null to delete),
`exclusiveMinimum` numbers turned into OpenAPI 3.0 booleans, titles and `additionalProperties: false` dropped
(the API server prunes unknown fields and `kubectl apply` warns or fails on them). Defaults, including those
of `default_factory` fields, are carried so that the stored object shows every effective setting and CEL rules
see the same values the operator uses.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from modelship.domain import api
from modelship.domain.status import ModelDeploymentStatus

Schema = dict[str, Any]

# Keys of pydantic's JSON Schema that have no place in a CRD schema.
_DROPPED = {"title", "x-modelship-format", "propertyNames", "$defs"}

# Fields whose models carry no description of their own (status types shared with other code).
FALLBACK_DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("Condition", "type"): "Condition type: Ready, Progressing, Degraded or Invalid.",
    ("Condition", "status"): "True, False or Unknown.",
    ("Condition", "reason"): "One-word CamelCase reason for the condition's last transition.",
    ("Condition", "message"): "Human-readable details about the last transition.",
    ("Condition", "lastTransitionTime"): "When the condition last changed status.",
}

KOPF_STATUS = {
    "type": "object",
    "description": "Bookkeeping of the kopf framework the operator runs on (handler progress); not an API.",
    "x-kubernetes-preserve-unknown-fields": True,
}


class _DefaultsGenerator(GenerateJsonSchema):
    """Also emits `default_factory` defaults, minimised so nested defaults apply one level down."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        if "default_factory" not in schema or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = schema["default_factory"]()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        return NoDefault  # empty lists and maps: absent means empty, nothing to show


def json_schema(model: type[BaseModel]) -> Schema:
    """pydantic's JSON Schema of a model, by alias, with factory defaults."""
    return model.model_json_schema(by_alias=True, schema_generator=_DefaultsGenerator)


class _Converter:
    def __init__(self, defs: dict[str, Schema], defaults: bool) -> None:
        self.defs = defs
        self.defaults = defaults

    def resolve(self, node: Schema) -> tuple[Schema, str | None]:
        """Inline a `$ref`, siblings (description, default) winning over the referenced definition."""
        if "$ref" not in node:
            return node, None
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**copy.deepcopy(self.defs[name]), **{k: v for k, v in node.items() if k != "$ref"}}
        return merged, name

    def convert(self, node: Schema, owner: str | None = None, field: str | None = None) -> Schema:
        node, def_name = self.resolve(node)
        out: Schema = {}
        if "anyOf" in node:
            branches = [b for b in node["anyOf"] if b.get("type") != "null"]
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if rest.get("default", 0) is None:
                del rest["default"]
            if len(branches) == 1:
                inner, _ = self.resolve(branches[0])
                return self.convert({**inner, **rest}, owner, field)
            # A union of scalar types (tensor values): structural schemas need one type, so accept any here
            # and let the operator's model validation refuse what is not a number, string or boolean.
            out = {"x-kubernetes-preserve-unknown-fields": True}
            if "description" in rest:
                out["description"] = rest["description"]
            lengths = [b["maxLength"] for b in branches if b.get("type") == "string" and "maxLength" in b]
            if lengths:  # the API server checks it on string values only
                out["maxLength"] = max(lengths)
            return out
        for key, value in node.items():
            if key in _DROPPED or (key == "additionalProperties" and value is False):
                continue
            if key == "const":
                out["enum"] = [value]
            elif key == "exclusiveMinimum":
                out["minimum"], out["exclusiveMinimum"] = value, True
            elif key == "exclusiveMaximum":
                out["maximum"], out["exclusiveMaximum"] = value, True
            elif key == "properties":
                if value:
                    name = def_name or node.get("title")
                    out["properties"] = {k: self.convert(v, name, k) for k, v in value.items()}
            elif key == "items":
                out["items"] = self.convert(value)
            elif key == "additionalProperties":
                out["additionalProperties"] = self.convert(value)
            elif key == "patternProperties":  # a map with constrained keys: CEL on the map checks the keys
                (values,) = value.values()
                out["additionalProperties"] = self.convert(values)
            elif key == "default" and (value is None or not self.defaults):
                continue
            elif key == "x-kubernetes-validations":
                out[key] = [{k: rule[k] for k in _RULE_KEYS if k in rule} for rule in value]
            else:
                out[key] = copy.deepcopy(value)
        if "enum" in out and "type" not in out:
            out["type"] = "string"
        if "description" not in out and owner and field and (owner, field) in FALLBACK_DESCRIPTIONS:
            out["description"] = FALLBACK_DESCRIPTIONS[(owner, field)]
        return _ordered(out)


_RULE_KEYS = ("rule", "message", "messageExpression", "fieldPath", "reason")
_ORDER = ("description", "type", "format", "nullable", "enum", "default", "required")


def _ordered(node: Schema) -> Schema:
    """Stable, readable key order: description and type first, validations last."""
    first = {k: node[k] for k in _ORDER if k in node}
    rest = {k: node[k] for k in sorted(node) if k not in first and k != "x-kubernetes-validations"}
    last = {"x-kubernetes-validations": node["x-kubernetes-validations"]} if "x-kubernetes-validations" in node else {}
    return {**first, **rest, **last}


def openapi_schema(model: type[BaseModel], *, defaults: bool = True) -> Schema:
    """Structural OpenAPI v3 schema of a model; `defaults=False` leaves defaulting to the model (status)."""
    raw = json_schema(model)
    return _Converter(raw.get("$defs", {}), defaults).convert(raw)


def status_schema() -> Schema:
    """Status is written only by the operator: typed and documented, without server-side defaults."""
    schema = openapi_schema(ModelDeploymentStatus, defaults=False)
    schema["properties"]["kopf"] = _ordered(KOPF_STATUS)
    return schema


def resource_schema() -> Schema:
    """The whole ModelDeployment object's schema."""
    return {
        "description": "ModelDeployment rolls out a Triton-served model version through validation, optional "
        "shadow and judged canary steps, and rolls back on its own when SLOs breach.",
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "description": f"Versioned schema of this representation of an object: {api.API_VERSION}.",
                "type": "string",
            },
            "kind": {
                "description": "REST resource this object represents: ModelDeployment.",
                "type": "string",
            },
            "metadata": {"type": "object"},  # the API server allows nothing else here, not even a description
            "spec": openapi_schema(api.ModelDeploymentSpec),
            "status": status_schema(),
        },
        "x-kubernetes-validations": NAME_RULES,
    }


NAME_RULES = [
    {
        "rule": f"self.metadata.name.size() <= {api.MAX_NAME_LENGTH}",
        "message": f"metadata.name must be at most {api.MAX_NAME_LENGTH} characters: Modelship names child objects "
        "<name>-<10-character revision hash> and <name>-canary, which must fit 63",
    },
    {
        "rule": f"self.metadata.name.matches(r'{api.NAME_PATTERN}')",
        "message": "metadata.name must use only lowercase letters, digits and '-', start with a letter and end "
        "with a letter or digit: it is also the model's Service name (a DNS-1035 label)",
    },
]
"""Names child objects cannot carry are refused at admission (validation.name_problems says the same)."""


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model.name", "description": "Triton model name."},
    {
        "name": "Desired",
        "type": "string",
        "jsonPath": ".spec.model.version",
        "description": "Version asked for.",
    },
    {
        "name": "Stable",
        "type": "string",
        "jsonPath": ".status.stableRevision.version",
        "description": "Version serving live traffic.",
    },
    {"name": "Stage", "type": "string", "jsonPath": ".status.stage", "description": "Rollout stage."},
    {
        "name": "Weight",
        "type": "integer",
        "jsonPath": ".status.canaryWeight",
        "description": "Percent of live traffic on the canary.",
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Rollout phase."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Message",
        "type": "string",
        "jsonPath": ".status.message",
        "priority": 1,
        "description": "Where the rollout is, in words.",
    },
]


def _explain_defaults(node: Schema) -> Schema:
    """Say scalar defaults in descriptions too: `kubectl explain` shows enums but not defaults."""
    default = node.get("default")
    if isinstance(default, str | int | float | bool) and "description" in node:
        shown = default if isinstance(default, str) and default else json.dumps(default)
        node["description"] = f"{node['description'].rstrip()} Default: {shown}."
    for child in node.get("properties", {}).values():
        _explain_defaults(child)
    if isinstance(node.get("items"), dict):
        _explain_defaults(node["items"])
    return node


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{api.PLURAL}.{api.GROUP}",
            "labels": {"app.kubernetes.io/name": "modelship", "app.kubernetes.io/part-of": "modelship"},
        },
        "spec": {
            "group": api.GROUP,
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": list(api.SHORT_NAMES),
                "categories": ["modelship", "all"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": _explain_defaults(resource_schema())},
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_presenter)


def to_yaml(obj: Any) -> str:
    """Deterministic YAML: insertion order kept, no anchors, no line folding."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=10_000, allow_unicode=True)


HEADER = "# Generated by `modelship crds` from operator/modelship/domain: do not edit, run `make generate`.\n"


def crd_yaml() -> str:
    return HEADER + to_yaml(crd())
