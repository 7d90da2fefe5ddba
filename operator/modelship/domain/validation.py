"""Spec checks beyond the schema, each naming the field path and the fix (pure: no cluster, no clients).

`parse_spec` turns pydantic errors into problems with camelCase paths (`spec.rollout.canary.steps[1].weight`)
so the operator marks a bad object Invalid instead of crashing. `semantic_problems` repeats the CRD's CEL
rules (an object may predate the installed CRD, or come from `modelship validate`) and adds what CEL cannot
express: the custom-query namespace guard, tensor sizes, timing that would let no check run.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import ValidationError

from modelship.domain import promql
from modelship.domain.api import (
    MAX_ENV_TEXT,
    MAX_NAME_LENGTH,
    MAX_SAMPLE_VALUES,
    NAME_PATTERN,
    ModelDeploymentSpec,
    SampleInput,
)
from modelship.domain.crd import openapi_schema
from modelship.domain.durations import DURATION_MAX_LENGTH, format_duration, parse_duration
from modelship.domain.slos import BUILTIN_SLOS

_SET_BY_MODELSHIP = ("--model-repository", "--model-store", "--model-control-mode", "--load-model")
_INT_TYPES = {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: where (`spec.slo.custom[1].query`) and what to do about it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


# --- schema errors -----------------------------------------------------------------------------------------


@cache
def _spec_schema() -> dict[str, Any]:
    """The structural schema (aliases, inlined, documented) that paths and suggestions are read from."""
    return openapi_schema(ModelDeploymentSpec)


def _walk(loc: Iterable[int | str], raw: Any, missing: bool) -> tuple[str, dict[str, Any] | None, Any]:
    """Path text, the schema of the last object on the path, and the raw value there.

    Union branch tags that pydantic adds to `loc` (e.g. 'float' for tensor values) are skipped: only keys
    present in the input, list indexes and a final missing key become part of the path.
    """
    parts, node, schema = ["spec"], raw, _spec_schema()
    parent: dict[str, Any] | None = schema
    items = list(loc)
    for i, part in enumerate(items):
        if isinstance(part, int) and isinstance(node, list):
            parts.append(f"[{part}]")
            node = node[part] if 0 <= part < len(node) else None
            schema = schema.get("items", {})
        elif isinstance(part, str) and isinstance(node, dict) and (part in node or (missing and i == len(items) - 1)):
            parts.append(f".{part}")
            parent = schema
            node = node.get(part)
            schema = schema.get("properties", {}).get(part, {})
    return "".join(parts), parent, node


def _fix(error: Mapping[str, Any], parent: dict[str, Any] | None, value: Any) -> str:
    kind, ctx, field = error["type"], error.get("ctx") or {}, str(error["loc"][-1]) if error["loc"] else ""
    known = sorted((parent or {}).get("properties", {}))
    own = (parent or {}).get("properties", {}).get(field, {})
    if kind == "missing":
        what = own.get("description", "")
        return f"required field is missing: add {field}" + (f" ({what})" if what else "")
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(field, known, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"unknown field {field!r}: {hint}fields allowed here: {', '.join(known) or 'none'}"
    if kind == "finite_number":
        return f"{value!r} is not a finite number: give a plain number, e.g. 0.5"
    if kind == "string_type" and isinstance(value, int | float) and not isinstance(value, bool):
        return f'must be a string: quote it in YAML, e.g. "{value}"'
    if kind == "string_pattern_mismatch":
        if own.get("maxLength") == DURATION_MAX_LENGTH and "ms|s|m|h" in str(ctx.get("pattern", "")):
            return f"{value!r} is not a duration: use a number with a unit ms, s, m or h, e.g. '30s', '1h30m'"
        return f"{value!r} does not match the pattern {ctx.get('pattern')}"
    bounds = {
        "greater_than_equal": ("at least", "ge"),
        "greater_than": ("greater than", "gt"),
        "less_than_equal": ("at most", "le"),
        "less_than": ("less than", "lt"),
    }
    if kind in bounds:
        word, key = bounds[kind]
        return f"{value!r} is out of range: use a value {word} {ctx.get(key)}"
    if kind in ("too_long", "too_short", "string_too_long", "string_too_short"):
        limit = ctx.get("max_length") if kind.endswith("too_long") else ctx.get("min_length")
        word = "at most" if kind.endswith("too_long") else "at least"
        unit = "characters" if isinstance(value, str) else "items"
        actual = ctx.get("actual_length", len(value) if value is not None else 0)
        return f"has {actual} {unit}: use {word} {limit}"
    if kind in ("literal_error", "enum"):
        return f"{value!r} is not allowed: use one of {ctx.get('expected')}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        expected = _TYPE_WORDS.get(kind.split("_")[0], kind.split("_")[0])
        return f"must be {expected}, not {_TYPE_WORDS.get(type(value).__name__, type(value).__name__)} {value!r}"
    return str(error["msg"]).removeprefix("Value error, ")


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "string": "a string",
    "bool": "a boolean",
    "dict": "an object",
    "model": "an object",
    "list": "a list",
    "NoneType": "null",
}


def problems_from_error(error: ValidationError, raw: Mapping[str, Any]) -> list[Problem]:
    """pydantic errors as problems with camelCase field paths and fixes in plain words."""
    by_path: dict[str, list[tuple[Mapping[str, Any], dict[str, Any] | None, Any]]] = {}
    for item in error.errors(include_url=False):
        path, parent, value = _walk(item["loc"], raw, missing=item["type"] == "missing")
        if len(item["loc"]) > 1 and item["loc"][-1] == "[key]":  # a map key is wrong, not its value
            value = item["loc"][-2]
        by_path.setdefault(path, []).append((item, parent, value))
    problems = []
    for path, found in by_path.items():
        if len(found) > 1 and all(str(e["type"]).endswith("_type") for e, _, _ in found):  # a union: say it once
            kinds = [_TYPE_WORDS.get(str(e["type"]).split("_")[0], str(e["type"])) for e, _, _ in found]
            value = found[0][2]
            problems.append(Problem(path, f"must be {' or '.join(dict.fromkeys(kinds))}, not {value!r}"))
            continue
        problems += [Problem(path, _fix(e, parent, value)) for e, parent, value in found]
    return list(dict.fromkeys(problems))


def name_problems(name: str) -> list[Problem]:
    """The CRD's metadata.name rules: a name the child objects (Deployments, Services, labels) can carry."""
    out: list[Problem] = []
    if len(name) > MAX_NAME_LENGTH:
        out.append(
            Problem(
                "metadata.name",
                f"has {len(name)} characters: use at most {MAX_NAME_LENGTH} characters (Modelship names child "
                "objects <name>-<10-character revision hash> and <name>-canary, which must fit 63)",
            )
        )
    if re.fullmatch(NAME_PATTERN, name):
        return out
    if re.search(r"[^-a-z0-9]", name):
        out.append(
            Problem(
                "metadata.name",
                f"{name!r}: use only lowercase letters, digits and '-' (the name is also the model's Service "
                "name, which allows no dots or capitals)",
            )
        )
    if not name[:1].isalpha() or not name[:1].islower():
        out.append(Problem("metadata.name", f"{name!r}: start with a letter (Service names must)"))
    if name.endswith("-"):
        out.append(Problem("metadata.name", f"{name!r}: end with a letter or digit"))
    return out


def parse_spec(raw: Mapping[str, Any], name: str | None = None) -> ModelDeploymentSpec | list[Problem]:
    """The typed spec, or every problem that prevents it (with `name`: the object's name too); never raises."""
    named = name_problems(name) if name is not None else []
    if not isinstance(raw, Mapping):
        return [*named, Problem("spec", f"must be an object, not {type(raw).__name__}")]
    try:
        spec = ModelDeploymentSpec.model_validate(dict(raw))
    except ValidationError as exc:
        return [*named, *problems_from_error(exc, raw)]
    return named or spec


def check_manifest(doc: Mapping[str, Any]) -> list[Problem]:
    """Every problem of a ModelDeployment manifest: schema errors first, then semantic ones."""
    name = (doc.get("metadata") or {}).get("name")
    parsed = parse_spec(doc.get("spec") or {}, name=name if isinstance(name, str) else None)
    if isinstance(parsed, list):
        return parsed
    return semantic_problems(parsed)


# --- semantic checks ---------------------------------------------------------------------------------------


def semantic_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    """Problems a typed spec can still have; empty when the operator can act on it."""
    return [
        *_cel_equivalents(spec),
        *_timing_problems(spec),
        *_query_problems(spec),
        *_sample_problems(spec),
        *_serving_problems(spec),
        *_size_problems(spec),
        *_comparison_problems(spec),
        *_notification_problems(spec),
    ]


def _notification_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    """What CEL says of `spec.notifications`, for objects the API server did not check."""
    out: list[Problem] = []
    names = [subscription.name for subscription in spec.notifications]
    for i, subscription in enumerate(spec.notifications):
        if (subscription.webhook is None) == (subscription.apprise is None):
            out.append(Problem(f"spec.notifications[{i}]", "set exactly one of webhook or apprise"))
        if subscription.name in names[:i]:
            out.append(Problem(f"spec.notifications[{i}].name",
                               f"{subscription.name!r} is listed twice: notifications names must be unique"))
    return out


def _comparison_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    """Output SLOs need a comparator to measure them; compared output names must be unique (as CEL says)."""
    shadow = spec.rollout.shadow
    out: list[Problem] = []
    for entry in BUILTIN_SLOS:
        if not entry.comparator or entry.bound(spec.slo) is None:
            continue
        if shadow is None:
            out.append(Problem(f"spec.slo.{entry.name}", "judged only by the shadow comparator: declare "
                               "spec.rollout.shadow (comparison is on by default), or remove this SLO"))
        elif not shadow.compare.enabled:
            out.append(Problem(f"spec.slo.{entry.name}", "judged only by the shadow comparator, and "
                               "spec.rollout.shadow.compare.enabled is false: enable it, or remove this SLO"))
    names = [output.name for output in shadow.compare.outputs] if shadow is not None else []
    for i, name in enumerate(names):
        if name in names[:i]:
            out.append(Problem(f"spec.rollout.shadow.compare.outputs[{i}].name",
                               f"{name!r} is listed twice: compare.outputs names must be unique"))
    return out


def _cel_equivalents(spec: ModelDeploymentSpec) -> list[Problem]:
    """The CRD's x-kubernetes-validations, for objects that did not pass through them."""
    out: list[Problem] = []
    traffic = spec.traffic
    routers = [
        n
        for n, v in (("gatewayAPI", traffic.gateway_api), ("istio", traffic.istio), ("none", traffic.none))
        if v is not None
    ]
    if len(routers) != 1:
        found = " and ".join(routers) or "no router"
        out.append(Problem("spec.traffic", f"sets {found}: set exactly one of gatewayAPI, istio or none"))
    if spec.rollout.shadow is not None and traffic.kind == "none":
        out.append(
            Problem(
                "spec.rollout.shadow",
                "traffic.none splits traffic by replica counts and cannot mirror "
                "requests: remove rollout.shadow, or route with traffic.gatewayAPI or traffic.istio",
            )
        )
    weights: list[int] = []
    for i, step in enumerate(spec.rollout.canary.steps):
        at = f"spec.rollout.canary.steps[{i}]"
        if (step.weight is None) == (step.approval is None):
            out.append(Problem(at, "set exactly one of weight (with duration) or approval"))
        if step.weight is not None and step.duration is None:
            out.append(Problem(f"{at}.duration", "a weight step needs a duration, e.g. '5m'"))
        if step.approval is not None and step.duration is not None:
            out.append(Problem(f"{at}.duration", "an approval step takes no duration: remove it"))
        if step.weight is not None:
            if weights and step.weight <= weights[-1]:
                out.append(
                    Problem(
                        f"{at}.weight",
                        f"{step.weight} does not exceed the previous weight {weights[-1]}: "
                        "canary step weights must strictly increase, e.g. 5, 25, 50",
                    )
                )
            weights.append(step.weight)
    if not weights and spec.rollout.shadow is None:
        out.append(
            Problem(
                "spec.rollout.canary.steps",
                "no weight step and no shadow stage: the canary would be "
                "promoted without any analysed traffic; add e.g. {weight: 10, duration: 5m}",
            )
        )
    for entry in BUILTIN_SLOS:
        bound = entry.bound(spec.slo)
        if bound is not None and not entry.comparator and bound.max is None and bound.max_ratio_to_stable is None:
            out.append(Problem(f"spec.slo.{entry.name}", "set max, maxRatioToStable or both (or remove the SLO)"))
    seen: set[str] = set()
    for i, slo in enumerate(spec.slo.custom):
        at = f"spec.slo.custom[{i}]"
        if slo.min is None and slo.max is None:
            out.append(Problem(at, "a custom SLO needs min, max or both"))
        if slo.min is not None and slo.max is not None and slo.min > slo.max:
            out.append(Problem(f"{at}.min", f"min {slo.min} exceeds max {slo.max}: no value could pass"))
        if slo.name in seen:
            out.append(Problem(f"{at}.name", f"{slo.name!r} is used twice: custom SLO names must be unique"))
        seen.add(slo.name)
    for i, tol in enumerate(spec.serving.tolerations):
        at = f"spec.serving.tolerations[{i}]"
        if tol.operator == "Exists" and tol.value is not None:
            out.append(Problem(f"{at}.value", "a toleration with operator Exists takes no value: remove it"))
        if tol.key is None and tol.operator != "Exists":
            out.append(Problem(f"{at}.key", "a toleration without key needs operator Exists"))
        if tol.toleration_seconds is not None and tol.effect != "NoExecute":
            out.append(
                Problem(
                    f"{at}.tolerationSeconds",
                    "only a NoExecute toleration takes tolerationSeconds: "
                    "set effect: NoExecute or remove tolerationSeconds",
                )
            )
    return out


def _timing_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    rollout = spec.rollout
    interval = parse_duration(rollout.analysis.interval)
    shown = rollout.analysis.interval
    out: list[Problem] = []
    if rollout.shadow is not None and parse_duration(rollout.shadow.duration) < interval:
        out.append(
            Problem(
                "spec.rollout.shadow.duration",
                f"{rollout.shadow.duration} is shorter than "
                f"analysis.interval {shown}: no SLO check could run in the shadow stage; make it at "
                f"least {shown} (several intervals give a sturdier verdict)",
            )
        )
    watch = rollout.post_promotion
    if watch is not None and parse_duration(watch.window) < interval:
        out.append(
            Problem(
                "spec.rollout.postPromotion.window",
                f"{watch.window} is shorter than analysis.interval {shown}: no SLO check could run after "
                f"promotion; make it at least {shown}",
            )
        )
    for i, step in enumerate(rollout.canary.steps):
        if step.duration is not None and parse_duration(step.duration) < interval:
            out.append(
                Problem(
                    f"spec.rollout.canary.steps[{i}].duration",
                    f"{step.duration} is shorter than "
                    f"analysis.interval {shown}: no SLO check could run in this step; "
                    f"make it at least {shown}",
                )
            )
    needed = interval * rollout.analysis.failure_limit
    if parse_duration(rollout.progress_deadline) < needed:
        out.append(
            Problem(
                "spec.rollout.progressDeadline",
                f"{rollout.progress_deadline} is shorter than "
                f"analysis.interval x failureLimit ({shown} x {rollout.analysis.failure_limit} = "
                f"{format_duration(needed)}): the rollout would time out before failed checks could "
                f"count; make it at least {format_duration(needed)}",
            )
        )
    return out


def _query_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    """Tenant guard (reads only its namespace), then cost: a custom query must come back as one number."""
    return [
        Problem(f"spec.slo.custom[{i}].query", text)
        for i, slo in enumerate(spec.slo.custom)
        for text in promql.query_problems(slo.query) or promql.cardinality_problems(slo.query)
    ]


def _elements(shape: Iterable[int]) -> int:
    return math.prod(shape)


def _value_problem(tensor: SampleInput) -> str | None:
    kind = tensor.datatype
    for value in tensor.data:
        if kind == "BOOL" and not isinstance(value, bool):
            return f"BOOL data must be true/false, found {value!r}"
        if kind == "BYTES" and not isinstance(value, str):
            return f"BYTES data must be strings, found {value!r}"
        if kind in _INT_TYPES and (isinstance(value, bool | str) or not float(value).is_integer()):
            return f"{kind} data must be whole numbers, found {value!r}"
        if kind.startswith("FP") and isinstance(value, bool | str):
            return f"{kind} data must be numbers, found {value!r}"
        if kind.startswith("UINT") and isinstance(value, float) and value < 0:
            return f"{kind} data must not be negative, found {value!r}"
    return None


def _sample_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    out: list[Problem] = []
    for i, sample in enumerate(spec.validation.samples):
        at = f"spec.validation.samples[{i}]"
        names: set[str] = set()
        for j, tensor in enumerate(sample.inputs):
            where = f"{at}.inputs[{j}]"
            if tensor.name in names:
                out.append(Problem(f"{where}.name", f"input {tensor.name!r} is given twice"))
            names.add(tensor.name)
            count = _elements(tensor.shape)
            if len(tensor.data) != count:
                out.append(
                    Problem(
                        f"{where}.data",
                        f"has {len(tensor.data)} values but shape {tensor.shape} holds "
                        f"{count}: give exactly {count} values (flattened, row-major) or fix the shape",
                    )
                )
            problem = _value_problem(tensor)
            if problem:
                out.append(Problem(f"{where}.data", problem))
        outputs: set[str] = set()
        for k, expected in enumerate(sample.expect.outputs):
            where = f"{at}.expect.outputs[{k}]"
            if expected.name in outputs:
                out.append(Problem(f"{where}.name", f"output {expected.name!r} is expected twice"))
            outputs.add(expected.name)
            if expected.shape is not None and any(d < 0 for d in expected.shape):
                out.append(
                    Problem(
                        f"{where}.shape",
                        f"{expected.shape} has negative dimensions: a response has "
                        "concrete sizes; give the exact shape, or leave shape out to skip the check",
                    )
                )
            elif expected.shape is not None and expected.data is not None:
                count = _elements(expected.shape)
                if len(expected.data) != count:
                    out.append(
                        Problem(
                            f"{where}.data",
                            f"has {len(expected.data)} values but shape "
                            f"{expected.shape} holds {count}: give exactly {count} values",
                        )
                    )
    return out


def _serving_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    out: list[Problem] = []
    seen: set[str] = set()
    for i, env in enumerate(spec.serving.env):
        if env.name in seen:
            out.append(Problem(f"spec.serving.env[{i}].name", f"{env.name!r} is set twice: keep one"))
        seen.add(env.name)
    for i, arg in enumerate(spec.serving.args):
        flag = arg.split("=", 1)[0]
        if flag in _SET_BY_MODELSHIP:
            out.append(
                Problem(
                    f"spec.serving.args[{i}]",
                    f"{flag} is set by Modelship from spec.model (repository and version pin): remove it from args",
                )
            )
    return out


def _size_problems(spec: ModelDeploymentSpec) -> list[Problem]:
    """The CRD's totals across lists (CEL), which per-field bounds cannot express."""
    out: list[Problem] = []
    env_text = sum(len(env.value) for env in spec.serving.env)
    if env_text > MAX_ENV_TEXT:
        out.append(
            Problem(
                "spec.serving.env",
                f"values hold {env_text} characters together: use at most {MAX_ENV_TEXT} (mount larger "
                "settings from the model repository instead)",
            )
        )
    values = sum(
        len(tensor.data) for sample in spec.validation.samples for tensor in sample.inputs
    ) + sum(len(expected.data or []) for sample in spec.validation.samples for expected in sample.expect.outputs)
    if values > MAX_SAMPLE_VALUES:
        out.append(
            Problem(
                "spec.validation.samples",
                f"hold {values} tensor values together: use at most {MAX_SAMPLE_VALUES} (small representative "
                "inputs)",
            )
        )
    return out
