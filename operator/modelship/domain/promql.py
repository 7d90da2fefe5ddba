"""Custom SLO queries: safe templating and the tenant guard (a query may only read its own namespace).

The guard parses PromQL with `promql-parser` (Python binding of the Rust parser GreptimeDB uses; it knows
Prometheus 3 syntax: quoted label names, `or` inside braces, escapes) rather than pattern matching, because a
query that looks right as text can still select another namespace, e.g. `{"namespace"=~".*"}` or an `or`
alternative. It fails closed: whatever does not parse, or any selector it cannot prove to be
`namespace="{{namespace}}"` exactly once, is refused.

Templates are checked by rendering them with probe values that contain a double quote and a backslash: a
variable used outside a double-quoted label value then breaks the parse (refused), and the namespace matcher
must decode to exactly the probe namespace. At run time, `template_query` escapes every value the same way,
so a value can never close a string and add matchers of its own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

import promql_parser as pp

VARIABLES = ("namespace", "name", "revision", "model", "version", "interval")
_VAR = re.compile(r"\{\{([^{}]*)\}\}")
_INTERVAL = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
# A double quote in every probe: a variable outside a double-quoted string breaks the parse. Regex-safe, so
# `namespace=~"{{namespace}}"` parses and is refused for its operator, with a message that says so.
_PROBES = {
    "namespace": 'ns-probe"q',
    "name": 'name-probe"q',
    "revision": 'rev-probe"q',
    "model": 'model-probe"q',
    "version": '1"q',
    "interval": "1m",
}


def escape_label_value(value: str) -> str:
    """Escape text for a double-quoted PromQL string (backslash, quote and newlines)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")


def template_variables(query: str) -> list[str]:
    """Every `{{...}}` placeholder in the query, in order (`{{ name }}` is reported as is, spaces and all)."""
    return _VAR.findall(query)


def unknown_variables(query: str) -> list[str]:
    """Placeholders that are not one of VARIABLES, plus stray `{{` / `}}` that would never be replaced."""
    unknown = [v for v in template_variables(query) if v not in VARIABLES]
    rest = _VAR.sub("", query)
    if "{{" in rest or "}}" in rest:
        unknown.append("unbalanced '{{' or '}}'")
    return unknown


def template_query(query: str, variables: Mapping[str, str]) -> str:
    """Fill in `{{var}}` placeholders; values are escaped for double-quoted label values.

    `interval` must be a Prometheus duration (it goes inside `[...]`, unquoted). Raises ValueError on an
    unknown or missing variable, so a half-rendered query is never sent.
    """
    bad = unknown_variables(query)
    if bad:
        raise ValueError(f"unknown template variables {bad}; allowed: {', '.join(VARIABLES)}")
    interval = variables.get("interval")
    if interval is not None and not _INTERVAL.fullmatch(interval):
        raise ValueError(f"interval {interval!r} is not a Prometheus duration such as '1m' or '90s'")

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in variables:
            raise ValueError(f"no value for template variable {{{{{name}}}}}")
        value = variables[name]
        return value if name == "interval" else escape_label_value(value)

    return _VAR.sub(fill, query)


def prometheus_duration(seconds: float) -> str:
    """Seconds as a Prometheus range duration ('90s', '1500ms'), for the `{{interval}}` variable."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def _children(node: pp.Expr) -> Iterator[pp.Expr]:
    if isinstance(node, pp.BinaryExpr):
        yield node.lhs
        yield node.rhs
    elif isinstance(node, pp.AggregateExpr):
        yield node.expr
        if isinstance(node.param, pp.Expr):
            yield node.param
    elif isinstance(node, pp.UnaryExpr | pp.ParenExpr | pp.SubqueryExpr):
        yield node.expr
    elif isinstance(node, pp.MatrixSelector):
        yield node.vector_selector
    elif isinstance(node, pp.Call):
        yield from node.args
    elif not isinstance(node, pp.VectorSelector | pp.NumberLiteral | pp.StringLiteral):
        raise ValueError(f"unsupported PromQL expression {type(node).__name__}")


def selectors(expr: pp.Expr) -> list[pp.VectorSelector]:
    """Every vector selector in the expression tree (inside ranges, subqueries, calls, aggregations)."""
    found: list[pp.VectorSelector] = []
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, pp.VectorSelector):
            found.append(node)
        stack.extend(_children(node))
    return found


def _selector_problem(selector: pp.VectorSelector, namespace: str) -> str | None:
    alternatives = [selector.matchers.matchers]
    if selector.matchers.or_matchers:
        alternatives = [selector.matchers.matchers + group for group in selector.matchers.or_matchers]
    for matchers in alternatives:
        ns = [m for m in matchers if m.name == "namespace"]
        if not ns:
            return "has no namespace matcher"
        if len(ns) > 1:
            return "has more than one namespace matcher"
        if ns[0].op != pp.MatchOp.Equal:
            return f"matches namespace with {_op(ns[0].op)} instead of ="
        if ns[0].value != namespace:
            return f'selects namespace "{ns[0].value}"'
    return None


def _op(op: pp.MatchOp) -> str:
    # MatchOp values are not hashable: compare one by one.
    for known, text in (
        (pp.MatchOp.Equal, "="),
        (pp.MatchOp.NotEqual, "!="),
        (pp.MatchOp.Re, "=~"),
        (pp.MatchOp.NotRe, "!~"),
    ):
        if op == known:
            return text
    return str(op)


def _show(selector: pp.VectorSelector, values: Mapping[str, str]) -> str:
    """A selector as the user wrote it: probe values shown as their placeholders again."""

    def value(text: str) -> str:
        for name, probe in values.items():
            if name != "interval":
                text = text.replace(probe, "{{" + name + "}}")
        return '"' + text.replace('"', '\\"') + '"'

    def group(matchers: list[pp.Matcher]) -> str:
        return ",".join(f"{m.name}{_op(m.op)}{value(m.value)}" for m in matchers)

    groups = [selector.matchers.matchers, *selector.matchers.or_matchers]
    return (selector.name or "") + "{" + " or ".join(group(g) for g in groups if g) + "}"


def namespace_guard(query: str, namespace: str, shown: Mapping[str, str] | None = None) -> list[str]:
    """Problems that let a rendered query read outside `namespace`; empty when it is confined to it."""
    try:
        expr = pp.parse(query)
        found = selectors(expr)
    except (ValueError, TypeError) as exc:
        return [f"is not valid PromQL: {exc}"]
    problems = []
    for selector in found:
        problem = _selector_problem(selector, namespace)
        if problem:
            text = _show(selector, shown or {})
            for name, probe in (shown or {}).items():
                problem = problem.replace(probe, "{{" + name + "}}") if name != "interval" else problem
            problems.append(f'selector {text} {problem}; every selector needs exactly namespace="{{{{namespace}}}}"')
    return problems


def query_problems(query: str) -> list[str]:
    """Why a custom SLO query template is refused (unknown variables, bad PromQL, reads another namespace)."""
    bad = unknown_variables(query)
    if bad:
        return [
            f"unknown template variable(s) {', '.join('{{' + v + '}}' if '{' not in v else v for v in bad)}; "
            f"use only {' '.join('{{' + v + '}}' for v in VARIABLES)}"
        ]
    rendered = template_query(query, _PROBES)
    problems = namespace_guard(rendered, _PROBES["namespace"], _PROBES)
    if problems and problems[0].startswith("is not valid PromQL"):
        return [
            problems[0] + " (after filling in the variables: every variable but {{interval}} must sit inside "
            'a double-quoted label value, e.g. revision="{{revision}}"; {{interval}} goes in a range, '
            "e.g. [{{interval}}])"
        ]
    return problems


# --- cardinality: a custom query must come back as one number ----------------------------------------------
# Why at admission: the operator is shared by every tenant, and a query that matches every series of a
# namespace costs Prometheus and the operator memory on every analysis round. What can only return many
# series (or a range vector, or a string) is refused here; what slips through is still bounded at run time
# (the Prometheus adapter asks for 2 series and caps the answer's bytes).

_ONE_SERIES_AGGREGATIONS = frozenset({"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "quantile"})
_ALWAYS_ONE = frozenset({"vector", "scalar", "time", "pi", "absent", "absent_over_time"})
_ONE_SERIES_FIX = "aggregate it to one series without by/without, e.g. sum(...), max(...) or avg(...)"


def _name_problem(selector: pp.VectorSelector, shown: Mapping[str, str]) -> str | None:
    """Selectors must name their metric exactly: others load every series they match (of the namespace)."""
    names = [m for m in selector.matchers.matchers if m.name == "__name__"]
    for group in selector.matchers.or_matchers:
        names += [m for m in group if m.name == "__name__"]
    if any(m.op != pp.MatchOp.Equal for m in names):
        return (f"selector {_show(selector, shown)} matches __name__ with a regex or !=: it reads every metric "
                "of the namespace; name one metric, e.g. my_metric{namespace=\"{{namespace}}\"}")
    if not selector.name and not names:
        return (f"selector {_show(selector, shown)} has no metric name: it reads every metric of the namespace; "
                "name one metric, e.g. my_metric{namespace=\"{{namespace}}\"}")
    return None


def _one_series(node: pp.Expr, dropped: frozenset[str] = frozenset()) -> bool:
    """True when the expression provably yields at most one series; `dropped`: labels a caller removes later."""
    if isinstance(node, pp.NumberLiteral):
        return True
    if isinstance(node, pp.ParenExpr | pp.UnaryExpr):
        return _one_series(node.expr, dropped)
    if isinstance(node, pp.AggregateExpr):
        op, modifier = str(node.op), node.modifier
        if op in ("topk", "bottomk", "limitk") and isinstance(node.param, pp.NumberLiteral) and node.param.val <= 1:
            return True
        if op not in _ONE_SERIES_AGGREGATIONS:
            return _one_series(node.expr, dropped)
        if modifier is None:
            return True
        return modifier.type == pp.AggModifierType.By and set(modifier.labels) <= dropped
    if isinstance(node, pp.Call):
        name = node.func.name
        if name in _ALWAYS_ONE:
            return True
        inner = frozenset({"le"}) if name.startswith("histogram_quantile") else dropped
        series = [a for a in node.args if not isinstance(a, pp.NumberLiteral | pp.StringLiteral)]
        return all(_one_series(a, inner) for a in series)
    if isinstance(node, pp.SubqueryExpr):
        return _one_series(node.expr, dropped)
    if isinstance(node, pp.BinaryExpr):
        if str(node.op) in ("and", "unless"):
            return _one_series(node.lhs, dropped)
        return _one_series(node.lhs, dropped) and _one_series(node.rhs, dropped)
    return False  # a selector, a range of one, a string


def cardinality_problems(query: str) -> list[str]:
    """Why a custom SLO query template cannot be one number: unnamed or __name__-regex selectors, range
    vectors, strings, results not aggregated to one series. Empty when it provably yields at most one value,
    and for templates `query_problems` refuses already (they never parse this far)."""
    if unknown_variables(query):
        return []
    try:
        expr = pp.parse(template_query(query, _PROBES))
        found = selectors(expr)
    except (ValueError, TypeError):
        return []
    problems = [text for sel in found if (text := _name_problem(sel, _PROBES))]
    top = expr
    while isinstance(top, pp.ParenExpr):
        top = top.expr
    if isinstance(top, pp.StringLiteral):
        problems.append("returns a string, not a number: a custom SLO is judged on one number")
    elif isinstance(top, pp.MatrixSelector | pp.SubqueryExpr):
        problems.append("returns a range vector, not one value: reduce it with a function and an aggregation, "
                        'e.g. sum(rate(my_metric{namespace="{{namespace}}"}[{{interval}}]))')
    elif not _one_series(top):
        problems.append(f"can return many series, but a custom SLO is judged on one value: {_ONE_SERIES_FIX}"
                        " (by (le) inside histogram_quantile is fine)")
    return problems
