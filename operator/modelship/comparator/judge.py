"""Pairwise judgement of one request's two answers: do canary's outputs agree with stable's?

A pair agrees when every compared output agrees. Differences that are not values (a missing output, another
shape or datatype, an answer that cannot be decoded) are disagreements with a reason, never a crash.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelship.comparator.tensors import Tensor
from modelship.domain.compare_spec import CompareSpec, OutputComparison, OutputMode


class Reason:
    """Bounded reason kinds (a metric label): what made an output disagree."""

    VALUES = "values"
    CLASSES = "classes"
    SHAPE = "shape"
    DATATYPE = "datatype"
    MISSING = "missing"


@dataclass(frozen=True)
class OutputVerdict:
    name: str
    agreed: bool
    reason: str = ""
    """A `Reason` kind, empty when it agreed."""
    detail: str = ""
    """What a human reads: 'max |diff| 0.31 > tolerance 0.0011 at element 3'."""


@dataclass(frozen=True)
class PairVerdict:
    outputs: tuple[OutputVerdict, ...]

    @property
    def agreed(self) -> bool:
        return all(output.agreed for output in self.outputs)


def compared_names(spec: CompareSpec, stable: Mapping[str, Tensor], canary: Mapping[str, Tensor]) -> list[str]:
    """The outputs judged: those the spec names, else every output either side returned."""
    if spec.outputs:
        return [entry.name for entry in spec.outputs]
    return sorted(set(stable) | set(canary))


def judge_pair(spec: CompareSpec, stable: Mapping[str, Tensor], canary: Mapping[str, Tensor]) -> PairVerdict:
    verdicts = []
    for name in compared_names(spec, stable, canary):
        verdicts.append(judge_output(spec, spec.output(name), stable.get(name), canary.get(name)))
    return PairVerdict(tuple(verdicts))


def judge_output(
    spec: CompareSpec, entry: OutputComparison, stable: Tensor | None, canary: Tensor | None
) -> OutputVerdict:
    name = entry.name
    if stable is None or canary is None:
        side = "stable" if stable is None else "canary"
        return OutputVerdict(name, False, Reason.MISSING, f"{side} answer has no output {name!r}")
    if stable.datatype != canary.datatype:
        return OutputVerdict(name, False, Reason.DATATYPE, f"datatype {canary.datatype} (stable {stable.datatype})")
    if stable.shape != canary.shape:
        return OutputVerdict(
            name, False, Reason.SHAPE, f"shape {list(canary.shape)} (stable {list(stable.shape)})"
        )
    if entry.mode != OutputMode.VALUES and stable.is_numeric:
        return _judge_classes(entry, stable, canary)
    if stable.is_float:
        absolute, relative = spec.tolerance(entry)
        return _judge_floats(name, stable.as_float(), canary.as_float(), absolute, relative)
    equal = np.asarray(stable.values == canary.values, dtype=bool).reshape(-1)
    if bool(equal.all()):
        return OutputVerdict(name, True)
    index = int(np.argmin(equal))
    return OutputVerdict(
        name, False, Reason.VALUES,
        f"{int(np.size(equal) - np.count_nonzero(equal))} of {np.size(equal)} values differ, first at element {index}",
    )


def _judge_floats(
    name: str, stable: npt.NDArray[np.float64], canary: npt.NDArray[np.float64], absolute: float, relative: float
) -> OutputVerdict:
    """|canary - stable| <= absolute + relative * |stable|; NaN agrees only with NaN, an infinity only with itself."""
    with np.errstate(invalid="ignore", over="ignore"):
        difference = np.abs(canary - stable)
        limit = absolute + relative * np.abs(stable)
        close = np.isfinite(stable) & np.isfinite(canary) & (difference <= limit)
    both_nan = np.isnan(stable) & np.isnan(canary)
    same_infinity = np.isinf(stable) & (stable == canary)
    agree = close | both_nan | same_infinity
    if bool(agree.all()):
        return OutputVerdict(name, True)
    failing = np.flatnonzero(~agree)
    worst = failing[int(np.argmax(np.nan_to_num(difference[failing], nan=np.inf)))]
    return OutputVerdict(
        name, False, Reason.VALUES,
        f"{failing.size} of {agree.size} values outside tolerance; at element {int(worst)} "
        f"{canary[worst]:.6g} (stable {stable[worst]:.6g}, tolerance {limit[worst]:.3g})",
    )


def top_classes(tensor: Tensor, k: int) -> npt.NDArray[np.int64]:
    """Indices of the k largest scores along the last axis, one row per leading index (sorted within a row)."""
    scores = tensor.as_float().reshape(-1, tensor.shape[-1] if tensor.shape else 1)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.sort(order, axis=1)


def _judge_classes(entry: OutputComparison, stable: Tensor, canary: Tensor) -> OutputVerdict:
    k = 1 if entry.mode == OutputMode.ARGMAX else entry.k
    if stable.values.size == 0:
        return OutputVerdict(entry.name, True)
    stable_top, canary_top = top_classes(stable, k), top_classes(canary, k)
    rows = np.flatnonzero((stable_top != canary_top).any(axis=1))
    if rows.size == 0:
        return OutputVerdict(entry.name, True)
    row = int(rows[0])
    label = "top class" if k == 1 else f"top {k} classes"
    return OutputVerdict(
        entry.name, False, Reason.CLASSES,
        f"{label} differ in {rows.size} of {stable_top.shape[0]} rows; row {row}: "
        f"{canary_top[row].tolist()} (stable {stable_top[row].tolist()})",
    )
