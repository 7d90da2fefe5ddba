"""Pure comparison of Triton model signatures and sample outputs (no I/O, so it is table-tested).

Why compare metadata at all: a canary whose output was renamed or changed dtype answers HTTP 200 to its own
health checks yet breaks every client the moment traffic moves; this catches it before any traffic does.
Messages name the tensor and the change (e.g. "output 'score' datatype FP32 -> FP64") because they land
in status and Events where an SRE must act on them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelship.domain.api import ContractMode, ExpectedOutput


@dataclass(frozen=True)
class TensorSpec:
    """One input or output as Triton's model metadata describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Signature:
    """A model version's inputs and outputs."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Signature:
        """From the KServe v2 `GET /v2/models/<name>/versions/<v>` body."""

        def tensors(key: str) -> tuple[TensorSpec, ...]:
            return tuple(
                TensorSpec(str(t["name"]), str(t["datatype"]), tuple(int(d) for d in t.get("shape", [])))
                for t in metadata.get(key, [])
            )

        return cls(tensors("inputs"), tensors("outputs"))


def _shape(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _names(names: Sequence[str]) -> str:
    return ", ".join(f"'{n}'" for n in names)


def _compare_shape(
    kind: str, name: str, stable: tuple[int, ...], canary: tuple[int, ...], strict: bool
) -> str | None:
    change = f"{kind} '{name}' shape {_shape(stable)} -> {_shape(canary)}"
    if len(stable) != len(canary):
        return change
    for before, after in zip(stable, canary, strict=True):
        if before == after or (not strict and after == -1):
            continue  # Compatible: a fixed dimension may widen to -1 (any size)
        return change
    return None


def _compare_kind(
    kind: str, stable: Sequence[TensorSpec], canary: Sequence[TensorSpec], strict: bool, may_add: bool
) -> list[str]:
    problems: list[str] = []
    old = {t.name: t for t in stable}
    new = {t.name: t for t in canary}
    added = [n for n in new if n not in old]
    for name, spec in old.items():
        if name not in new:
            has = f"canary has {_names(added)}" if added else f"canary has no other {kind}"
            problems.append(f"{kind} '{name}' missing; {has}")
            continue
        other = new[name]
        if spec.datatype != other.datatype:
            problems.append(f"{kind} '{name}' datatype {spec.datatype} -> {other.datatype}")
        shape_problem = _compare_shape(kind, name, spec.shape, other.shape, strict)
        if shape_problem:
            problems.append(shape_problem)
    missing = any(n not in new for n in old)
    if added and not may_add and not missing:  # a rename is already reported as "missing; canary has ..."
        why = "" if strict else " (clients do not send it)" if kind == "input" else ""
        problems.append(f"{kind}{'s' if len(added) > 1 else ''} {_names(added)} added{why}")
    return problems


def compare_signatures(stable: Signature, canary: Signature, mode: ContractMode | str) -> list[str]:
    """Contract problems of the canary against stable; empty means compatible under `mode`.

    Strict: identical inputs and outputs (names, datatypes, shapes). Compatible: the canary may add outputs
    and widen a dimension to -1; inputs may not be added (clients would not send them). Off: nothing.
    """
    mode = ContractMode(mode)
    if mode is ContractMode.OFF:
        return []
    strict = mode is ContractMode.STRICT
    return _compare_kind("input", stable.inputs, canary.inputs, strict, may_add=False) + _compare_kind(
        "output", stable.outputs, canary.outputs, strict, may_add=not strict
    )


# --- samples -----------------------------------------------------------------------------------------------


def _close(expected: Any, actual: Any, tolerance: float) -> bool:
    if isinstance(actual, bytes):
        actual = actual.decode("utf-8", errors="replace")
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(expected) == bool(actual)
    if isinstance(expected, str) or isinstance(actual, str):
        return str(expected) == str(actual)
    a, b = float(expected), float(actual)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return abs(a - b) <= tolerance


def compare_output(
    expected: ExpectedOutput, datatype: str | None, shape: Sequence[int] | None, values: Sequence[Any] | None
) -> str | None:
    """Why an output does not meet its expectation, or None when it does. `values` are flattened."""
    name = expected.name
    if datatype is None:
        return f"output '{name}' missing from the response"
    if expected.datatype is not None and expected.datatype != datatype:
        return f"output '{name}' datatype {datatype}, expected {expected.datatype}"
    if expected.shape is not None and shape is not None and list(expected.shape) != list(shape):
        return f"output '{name}' shape {_shape(shape)}, expected {_shape(expected.shape)}"
    if expected.data is not None:
        got = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in values or []]
        if len(got) != len(expected.data):
            return f"output '{name}' has {len(got)} values, expected {len(expected.data)}"
        for i, (want, have) in enumerate(zip(expected.data, got, strict=True)):
            if not _close(want, have, expected.tolerance):
                return (
                    f"output '{name}'[{i}] = {have!r}, expected {want!r} "
                    f"(tolerance {expected.tolerance:g})"
                )
    return None
