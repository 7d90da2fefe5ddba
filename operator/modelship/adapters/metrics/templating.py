"""Custom SLO PromQL templates: {{namespace}} {{name}} {{revision}} {{model}} {{version}} {{interval}}.

Why here and escaped: values land inside PromQL string literals, so a quote or backslash in a value must not
be able to close the literal and widen the selector. Prefers `modelship.domain.validation.template_query`
(which also enforces the namespace guard) when that module provides it; this minimal renderer is the fallback.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from typing import cast

VARIABLES = ("namespace", "name", "revision", "model", "version", "interval")
_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_]+)\s*\}\}")

Renderer = Callable[[str, Mapping[str, str]], str]


def escape_label_value(value: str) -> str:
    """Escape a value for a double-quoted PromQL string literal."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_local(template: str, variables: Mapping[str, str]) -> str:
    """Replace every known placeholder; an unknown placeholder is an error (a typo must not query nothing)."""

    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in variables:
            raise ValueError(f"unknown template variable {{{{{key}}}}}; use one of {', '.join(VARIABLES)}")
        return escape_label_value(variables[key])

    return _PLACEHOLDER.sub(sub, template)


def _domain_renderer() -> Renderer | None:
    try:
        module = importlib.import_module("modelship.domain.validation")
    except ImportError:
        return None
    fn = getattr(module, "template_query", None)
    return cast(Renderer, fn) if callable(fn) else None


def render_query(template: str, variables: Mapping[str, str]) -> str:
    """Render with the domain's guarded renderer when present, else locally; ValueError when refused."""
    renderer = _domain_renderer() or render_local
    return renderer(template, variables)
