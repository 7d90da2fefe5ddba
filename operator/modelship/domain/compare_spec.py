"""`spec.rollout.shadow.compare`: how the comparator judges canary answers against stable's, defined once.

The operator passes this object, as JSON, to the comparator it deploys (`MODELSHIP_COMPARE`), so the CRD, the
docs, validation and the comparator's judgement all read the same fields.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import ConfigDict, Field

from modelship.domain.api_base import ApiModel, cel, cel_rules

MAX_COMPARED_OUTPUTS = 8
"""Outputs named in `compare.outputs`: each becomes a bounded set of metric series."""
DEFAULT_ABSOLUTE = 1e-5
DEFAULT_RELATIVE = 1e-3
TENSOR_NAME_PATTERN = r"^[A-Za-z0-9_.:/-]+$"


class OutputMode(StrEnum):
    """How one output's answers are compared pairwise."""

    VALUES = "Values"
    """Every element: floats within tolerance, integers, bools and BYTES exactly."""
    ARGMAX = "Argmax"
    """Class scores: the index of the largest score along the last axis must match, row by row."""
    TOP_K = "TopK"
    """Class scores: the set of the `k` largest indices along the last axis must match, row by row."""


class OutputComparison(ApiModel):
    """One output tensor to compare, with its own mode and tolerances."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=TENSOR_NAME_PATTERN)] = Field(
        description="Output tensor name as the model's config declares it."
    )
    mode: OutputMode = Field(
        default=OutputMode.VALUES,
        description="Values (every element, within tolerance for floats), Argmax (same top class per row) or "
        "TopK (same set of k top classes per row).",
    )
    k: Annotated[int, Field(ge=1, le=100)] = Field(default=5, description="Classes compared in TopK mode.")
    absolute: Annotated[float, Field(ge=0.0, le=1e6)] | None = Field(
        default=None, description="Absolute tolerance for this output; default: compare.absolute."
    )
    relative: Annotated[float, Field(ge=0.0, le=1e6)] | None = Field(
        default=None,
        description="Relative tolerance (times |stable value|) for this output; default: compare.relative.",
    )


_OUTPUT_NAMES_UNIQUE = cel(
    "!has(self.outputs) || self.outputs.all(a, self.outputs.exists_one(b, b.name == a.name))",
    "compare.outputs names must be unique",
)


class CompareSpec(ApiModel):
    """Shadow output comparison: each mirrored request is answered by stable and canary and the answers judged.

    Judged through `slo.outputAgreement` (share of compared requests whose outputs all agree) and
    `slo.outputShift` (population stability index of canary's outputs against stable's over the analysis window).
    """

    model_config = ConfigDict(json_schema_extra=cel_rules(_OUTPUT_NAMES_UNIQUE))

    enabled: bool = Field(
        default=True,
        description="Compare answers during Shadow. On by default whenever a shadow stage is declared; false "
        "turns comparison (and the comparator) off.",
    )
    sample_percent: Annotated[float, Field(gt=0.0, le=100.0)] = Field(
        default=100.0, description="Percent of mirrored requests compared during Shadow (the rest are counted, "
        "not sent)."
    )
    canary_sample_percent: Annotated[float, Field(ge=0.0, le=100.0)] = Field(
        default=0.0,
        description="Percent of live requests still compared during canary steps and, against the previous "
        "revision while it is warm, in the post-promotion window; 0 stops comparing when Shadow ends.",
    )
    absolute: Annotated[float, Field(ge=0.0, le=1e6)] = Field(
        default=DEFAULT_ABSOLUTE, description="Absolute tolerance for floating-point outputs."
    )
    relative: Annotated[float, Field(ge=0.0, le=1e6)] = Field(
        default=DEFAULT_RELATIVE,
        description="Relative tolerance for floating-point outputs: values agree when |canary - stable| <= "
        "absolute + relative * |stable|.",
    )
    outputs: Annotated[list[OutputComparison], Field(max_length=MAX_COMPARED_OUTPUTS)] = Field(
        default_factory=list,
        description="Outputs to compare, each with its mode; empty compares every output in Values mode.",
    )

    def output(self, name: str) -> OutputComparison:
        """How `name` is compared: its own entry, or Values with the spec-wide tolerances."""
        for entry in self.outputs:
            if entry.name == name:
                return entry
        return OutputComparison.model_construct(name=name)

    def tolerance(self, entry: OutputComparison) -> tuple[float, float]:
        absolute = self.absolute if entry.absolute is None else entry.absolute
        relative = self.relative if entry.relative is None else entry.relative
        return absolute, relative
