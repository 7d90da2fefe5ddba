"""`spec.slo`: the bounds a canary is judged on, built-in (Triton's metrics, the comparator's judgement) and custom.

Apart from `api.py` to keep each part of the API readable; `slos.py` is the catalogue that turns these fields
into the one list that is queried, judged, validated and shown.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

from modelship.domain.api_base import ApiModel, cel, cel_rules

MAX_CUSTOM_SLOS = 16
DEFAULT_OUTPUT_SHIFT_MAX = 0.25
"""outputShift bound that applies when a shadow stage compares and `slo.outputShift` is not set: a population
stability index above 0.25 is a major shift (a broken pipeline, a constant output), a retrained model stays
well under it."""


def enforce_field() -> Any:
    """`enforce`, the same on every SLO: false makes it observe-only (measured, shown, evented, never failing)."""
    return Field(
        default=True,
        description="false: observe only. The SLO is measured, shown in status and evented when breached, but "
        "never fails a check; for building trust in a bound before gating on it.",
    )


_RATIO = cel("!has(self.maxRatioToStable) || self.maxRatioToStable > 0.0", "maxRatioToStable must be greater than 0")


class RatioBound(ApiModel):
    """An upper bound, absolute and optionally relative to the stable revision measured in the same window."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.max) || has(self.maxRatioToStable)", "set max, maxRatioToStable or both"), _RATIO
        )
    )

    max: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="Absolute upper bound."
    )
    max_ratio_to_stable: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="Canary value divided by stable's must not exceed this, e.g. 1.2."
    )
    enforce: bool = enforce_field()


class ErrorRateBound(RatioBound):
    """Failed / all Triton inference requests in the window."""

    max: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] | None = Field(
        default=None, description="Highest acceptable error ratio, 0-1 (0.01 = 1%)."
    )


class CustomSlo(ApiModel):
    """A PromQL query judged per revision.

    Templating: {{namespace}} {{name}} {{revision}} {{model}} {{version}} {{interval}}.
    """

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel("has(self.min) || has(self.max)", "a custom SLO needs min, max or both"),
            cel("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not exceed max"),
            cel(
                "self.query.contains('{{namespace}}')",
                'the query must select namespace="{{namespace}}" so it only reads this namespace',
                ".query",
            ),
            cel(
                "!self.query.matches('__name__\"?\\\\s*(=~|!=|!~)')",
                "the query matches __name__ with a regex or !=, which reads every metric of the namespace: "
                'name one metric, e.g. my_metric{namespace="{{namespace}}"}',
                ".query",
            ),
        )
    )

    name: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")] = Field(
        description="Name shown in status and Events (DNS label)."
    )
    query: Annotated[str, Field(min_length=1, max_length=1024)] = Field(
        description='PromQL returning one value for a revision; every selector must carry namespace="{{namespace}}".'
    )
    min: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        default=None, description="Lowest acceptable value."
    )
    max: Annotated[float, Field(allow_inf_nan=False)] | None = Field(
        default=None, description="Highest acceptable value."
    )
    enforce: bool = enforce_field()


class AgreementBound(ApiModel):
    """Share of compared requests whose outputs all agree with stable's (the shadow comparator's judgement)."""

    min: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = Field(
        description="Lowest acceptable share of compared requests whose outputs agree, 0-1 (0.99 = 99%)."
    )
    enforce: bool = enforce_field()


class ShiftBound(ApiModel):
    """How far canary's output distribution moved from stable's: population stability index, worst output."""

    max: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False)] = Field(
        description="Highest acceptable population stability index (< 0.1 no real change, 0.1-0.25 moderate, "
        f"> 0.25 major). Default {DEFAULT_OUTPUT_SHIFT_MAX} whenever a shadow stage compares."
    )
    enforce: bool = enforce_field()


class Slo(ApiModel):
    """Service level objectives judged on Triton's own metrics and the comparator's judgement of the model's
    answers; no PromQL needed for the built-in ones."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            cel(
                "!has(self.custom) || self.custom.all(c, self.custom.filter(d, d.name == c.name).size() == 1)",
                "custom SLO names must be unique",
                ".custom",
            )
        )
    )

    error_rate: ErrorRateBound | None = Field(default=None, description="Failed / all inference requests.")
    latency_p99_ms: RatioBound | None = Field(default=None, description="p99 request latency in milliseconds.")
    latency_p95_ms: RatioBound | None = Field(default=None, description="p95 request latency in milliseconds.")
    queue_p99_ms: RatioBound | None = Field(default=None, description="p99 time queued in Triton, milliseconds.")
    output_agreement: AgreementBound | None = Field(
        default=None,
        description="Share of compared requests whose outputs all agree with stable's, within "
        "rollout.shadow.compare tolerances. Judged while the comparator runs; minRequests counts compared pairs.",
    )
    output_shift: ShiftBound | None = Field(
        default=None,
        description="Population stability index of canary's outputs against stable's over the analysis window "
        "(worst output). Judged while the comparator runs; minRequests counts compared pairs.",
    )
    custom: Annotated[list[CustomSlo], Field(max_length=MAX_CUSTOM_SLOS)] = Field(
        default_factory=list, description="Extra PromQL checks with templating."
    )
