"""Go-style durations ("90s", "5m", "1h30m"), the format kubectl users already know from Argo and Flagger."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raises ValueError naming the accepted format so the user knows the fix."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a duration: use a number with a unit ms, s, m or h, e.g. '30s', '5m', '1h30m'"
        )
    seconds = sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """Render a timedelta compactly (e.g. '1h5m', '30s') for messages and status."""
    total = int(delta.total_seconds())
    if total < 0:
        return "-" + format_duration(-delta)
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{seconds}s" if seconds else ""]
    return "".join(parts) or "0s"


def _check(text: str) -> str:
    if parse_duration(text).total_seconds() <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return text


DURATION_MAX_LENGTH = 32


def cel_duration_ok(expr: str) -> str:
    """CEL guard: `expr` is a string CEL's duration() parses (pattern errors are reported on their own)."""
    return f"{expr}.matches(r'{DURATION_PATTERN}')"


Duration = Annotated[
    str,
    Field(
        pattern=DURATION_PATTERN,
        max_length=DURATION_MAX_LENGTH,
        json_schema_extra={
            "x-modelship-format": "duration",
            "x-kubernetes-validations": [
                {
                    "rule": f"!{cel_duration_ok('self')} || duration(self) > duration('0s')",
                    "message": "a duration must be longer than zero, e.g. '30s' or '5m'",
                }
            ],
        },
    ),
    AfterValidator(_check),
]
"""A positive Go-style duration string, kept as text so status and YAML round-trip unchanged."""
