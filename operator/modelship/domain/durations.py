"""Go-style durations ("90s", "5m", "1h30m"), the format kubectl users already know from Argo and Flagger.

Every duration has an upper bound: 720h (30 days) unless a field asks for less. A month is longer than any
useful shadow stage, canary step or deadline, and it keeps every `now + duration` and `interval x
failureLimit` far inside what clocks, datetimes and CEL's duration() (about 292 years) can hold. The CRD
bounds length and digits too, so the API server never hands CEL a value it cannot parse.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, Field

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# What CEL's duration() is handed: at most 6 digits a number, 16 characters in all (under 230 years).
CEL_SAFE_PATTERN = r"^([0-9]{1,6}(\.[0-9]{1,6})?(ms|s|m|h))+$"
DURATION_MAX_LENGTH = 16
MAX_DURATION = timedelta(days=30)
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def limit_text(limit: timedelta) -> str:
    """'720h (30 days)' or '1h': the limit as a duration, with days when that reads easier."""
    shown = format_duration(limit)
    return f"{shown} ({limit.days} days)" if limit.days and not limit.seconds else shown


def parse_duration(text: str, maximum: timedelta = MAX_DURATION) -> timedelta:
    """Parse a duration; raises ValueError naming the accepted format, or the limit, so the user knows the fix.

    Never OverflowError: the sum is taken in floats (any digit count gives a number or inf) and compared with
    `maximum` before a timedelta is built.
    """
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a duration: use a number with a unit ms, s, m or h, e.g. '30s', '5m', '1h30m'"
        )
    seconds = math.fsum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))
    if not seconds <= maximum.total_seconds():
        raise ValueError(f"{text!r} is too long: use at most {limit_text(maximum)}")
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


def cel_duration_ok(expr: str) -> str:
    """CEL guard: `expr` is a string CEL's duration() parses without overflow (other rules report the rest)."""
    return f"{expr}.matches(r'{CEL_SAFE_PATTERN}')"


def positive_within(maximum: timedelta) -> Callable[[str], str]:
    """pydantic after-validator: a duration longer than zero and at most `maximum`."""

    def check(text: str) -> str:
        if parse_duration(text, maximum).total_seconds() <= 0:
            raise ValueError(f"{text!r} must be longer than zero")
        return text

    return check


def duration_field(maximum: timedelta) -> Any:
    """Schema of a duration field: loose pattern and length for pydantic, CEL rules naming the fix."""
    limit = format_duration(maximum)
    return Field(
        pattern=DURATION_PATTERN,
        max_length=DURATION_MAX_LENGTH,
        json_schema_extra={
            "x-modelship-format": "duration",
            "x-kubernetes-validations": [
                {
                    "rule": f"!{cel_duration_ok('self')} || duration(self) > duration('0s')",
                    "message": "a duration must be longer than zero, e.g. '30s' or '5m'",
                },
                {
                    "rule": f"!self.matches(r'{DURATION_PATTERN}') || "
                    f"{cel_duration_ok('self')} && duration(self) <= duration('{limit}')",
                    "message": f"a duration must be at most {limit_text(maximum)}, "
                    "with at most 6 digits a number, e.g. '30s' or '5m'",
                },
            ],
        },
    )


Duration = Annotated[str, duration_field(MAX_DURATION), AfterValidator(positive_within(MAX_DURATION))]
"""A positive duration of at most 720h (30 days), kept as text so status and YAML round-trip unchanged."""
