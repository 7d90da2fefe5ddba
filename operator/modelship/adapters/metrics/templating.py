"""Render a custom SLO query for one revision and re-check the tenant guard before it is sent.

Why check again at run time: admission (CEL + `modelship.domain.validation`) refuses queries that read other
namespaces, but an object admitted by an older CRD, or edited while the webhook was down, must still not be
able to read another tenant's metrics through the operator's Prometheus credentials.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelship.domain.promql import namespace_guard, template_query


def render_query(template: str, variables: Mapping[str, str]) -> str:
    """The rendered query; ValueError when a variable is unknown or the query escapes its namespace."""
    rendered = template_query(template, variables)
    problems = namespace_guard(rendered, variables["namespace"])
    if problems:
        raise ValueError("; ".join(problems))
    return rendered
