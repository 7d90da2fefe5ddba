"""What every API object shares: the base model (camelCase, unknown fields refused) and CEL rule helpers.

Apart from `api.py` so that parts of the API defined in their own modules (`compare_spec.py`) use the same base
without importing the whole API.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


def cel(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    """One CEL validation rule, rendered into the CRD as an x-kubernetes-validations entry."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def cel_rules(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


class ApiModel(BaseModel):
    """Base of every spec object: camelCase on the wire, unknown fields refused (a typo must not pass)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        frozen=True,
        validate_default=True,
    )
