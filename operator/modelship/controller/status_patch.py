"""Compute the smallest status merge patch: the whole new status is computed, only changed keys are sent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def status_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level keys whose value changed; removed keys map to None (merge-patch deletion)."""
    patch: dict[str, Any] = {key: value for key, value in new.items() if old.get(key) != value}
    for key in old:
        if key not in new:
            patch[key] = None
    return patch
