"""Prometheus metrics source: Triton's own metrics per revision (queries in `queries.py`).

Queries go over asyncio (`bounded.PrometheusClient`, no thread per query), at most `max_concurrency` at once
per source, and all queries of one analysis round run concurrently.

Evidence rules: a provider failure (connection, timeout, 401/403/429/5xx, an answer that is not Prometheus')
makes the whole snapshot `available=False`; an empty result or NaN is `None` (NoData); what is wrong with one
query (refused as bad PromQL, timed out in Prometheus' evaluation, more than one series, an answer over the
byte bound, a range vector or a string) is an error of that SLO only, so the other SLOs are still judged.
What is measured is `slos.configured_slos`, the list the analysis judges (the comparator's SLOs from its own
series, only while it runs). Answers are bounded in series, bytes
and time (`bounded.py`). Error texts carry no URL credentials and never the token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelship.adapters.metrics.base import AnalysisQuery
from modelship.adapters.metrics.bounded import (
    AnswerTooLarge,
    PrometheusAnswered,
    PrometheusClient,
    Unreachable,
    prometheus_timeout,
)
from modelship.adapters.metrics.queries import (
    DEFAULT_REVISION_LABEL,
    builtin_queries,
    comparator_queries,
    comparator_selector,
    compared_query,
    requests_query,
    selector,
    shift_detail_queries,
)
from modelship.adapters.metrics.templating import render_query
from modelship.domain.compare_spec import MAX_COMPARED_OUTPUTS
from modelship.domain.observations import MetricsSnapshot, MetricValue
from modelship.domain.slos import OUTPUT_SHIFT, configured_slos

log = logging.getLogger(__name__)

_OUTAGE_STATUS = frozenset({401, 403, 407, 408, 429})


@dataclass(frozen=True)
class PrometheusSettings:
    """Where Prometheus is and how to authenticate; secrets are kept out of repr (and so out of logs)."""

    url: str
    bearer_token: str | None = field(default=None, repr=False)
    bearer_token_file: str | None = None
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    timeout_s: float = 5.0
    revision_label: str = DEFAULT_REVISION_LABEL
    max_concurrency: int = 8
    max_series: int = 2
    """Series asked for per query (`limit`): one is an answer, two is enough to know it is not one."""
    max_response_bytes: int = 256 * 1024
    """Largest answer read per query; one series takes well under 4 KiB."""

    def query_params(self) -> dict[str, str]:
        """Bounds sent with every query: at most `max_series` series, Prometheus gives up before the client."""
        return {"limit": str(self.max_series), "timeout": prometheus_timeout(self.timeout_s)}


class QueryClient(Protocol):
    """The one query method used (`bounded.PrometheusClient`); tests pass a fake."""

    async def custom_query(self, query: str, params: dict[str, str] | None = None) -> Any: ...


# --- result parsing (pure) ---------------------------------------------------------------------------------


class QueryRefused(Exception):
    """Prometheus answered but refused the query (bad PromQL): a per-metric error, not an outage."""


class ProviderDown(Exception):
    """Prometheus could not be asked: connection, timeout, auth, overload or a non-Prometheus answer."""


def parse_value(result: Any) -> float | None:
    """One number from an instant-query result; None for empty or NaN.

    Raises QueryRefused for what the query asked for (many series, a range vector, a string) and ProviderDown
    for what no valid Prometheus answer looks like.
    """
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        raw = result[1]  # resultType scalar [ts, "v"] or string [ts, "text"]
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise QueryRefused("the query returns a string, not a number") from None
    elif isinstance(result, list):
        if not result:
            return None
        if len(result) > 1:
            raise QueryRefused(
                f"query returned {len(result)} or more series; aggregate it to one (e.g. sum or max)"
            )
        sample = result[0]
        if isinstance(sample, dict) and "values" in sample and "value" not in sample:
            raise QueryRefused("the query returns a range vector; reduce it to one value, e.g. sum(rate(x[5m]))")
        if not isinstance(sample, dict) or "value" not in sample:
            raise ProviderDown("unexpected result shape from Prometheus")
        try:
            value = float(sample["value"][1])
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise ProviderDown("unexpected sample value from Prometheus") from exc
    else:
        raise ProviderDown("unexpected result shape from Prometheus")
    if math.isnan(value):
        return None
    if math.isinf(value):
        raise QueryRefused(f"value is {value}: the query divides by zero")
    return value


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_AUTH = re.compile(r"(?i)\b(bearer|basic|authorization)\b[\s:=]+(?:(?:bearer|basic)\s+)?\S+")


def scrub(text: str, limit: int = 300) -> str:
    """Drop URL credentials and auth header values, and bound the length (it lands in status and Events)."""
    text = _AUTH.sub(r"\1 <redacted>", _USERINFO.sub("", text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify(exc: BaseException) -> Exception:
    """Map a client exception to ProviderDown (outage) or QueryRefused (bad query)."""
    if isinstance(exc, QueryRefused | ProviderDown):
        return exc
    if isinstance(exc, AnswerTooLarge):
        return QueryRefused(f"{exc}: the query returns too many series; aggregate it to one (e.g. sum or max)")
    if isinstance(exc, PrometheusAnswered):
        error = exc.payload()
        said = str(error.get("error") or "query refused")
        if exc.status == 503 and error.get("errorType") == "timeout":
            # Prometheus answered: this query's evaluation ran out of time (others may not)
            return QueryRefused(f"Prometheus gave up evaluating the query: {said}; make it cheaper")
        if exc.status in _OUTAGE_STATUS or exc.status >= 500:
            return ProviderDown(scrub(f"Prometheus answered HTTP {exc.status}"))
        return QueryRefused(scrub(f"HTTP {exc.status}: {said}"))
    if isinstance(exc, Unreachable):
        return ProviderDown(scrub(exc.reason))
    return ProviderDown(scrub(f"unexpected answer from Prometheus: {type(exc).__name__}: {exc}"))


# --- the source --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Measured:
    value: float | None
    source: str | None = None
    error: str | None = None
    outage: str | None = None


def connect(settings: PrometheusSettings) -> PrometheusClient:
    """A client with auth, CA, bounded answers and no retries: the next analysis round is the retry."""
    headers: dict[str, str] = {}
    token = settings.bearer_token
    if settings.bearer_token_file:
        with open(settings.bearer_token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    verify: ssl.SSLContext | bool = not settings.insecure_skip_verify
    if settings.ca_file and not settings.insecure_skip_verify:
        verify = ssl.create_default_context(cafile=settings.ca_file)
    return PrometheusClient(settings.url, headers=headers, basic_auth=settings.basic_auth, ssl_context=verify,
                            timeout_s=settings.timeout_s, max_bytes=settings.max_response_bytes)


class PrometheusSource:
    """MetricsSource over Prometheus' HTTP API. `client_factory` exists so tests can inject a fake."""

    def __init__(
        self,
        settings: PrometheusSettings,
        client_factory: Callable[[PrometheusSettings], QueryClient] = connect,
    ) -> None:
        self.settings = settings
        self._client_factory = client_factory
        self._client: QueryClient | None = None
        self._token_stamp: tuple[int, int] | None = None
        self._limits: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    def _limit(self) -> asyncio.Semaphore:
        """Concurrency bound per event loop (a Semaphore is bound to the loop it first waits on)."""
        loop = asyncio.get_running_loop()
        limit = self._limits.get(loop)
        if limit is None:
            self._limits = {lp: sem for lp, sem in self._limits.items() if not lp.is_closed()}
            limit = self._limits[loop] = asyncio.Semaphore(max(1, self.settings.max_concurrency))
        return limit

    async def _get_client(self) -> QueryClient:
        """The client, rebuilt when the token file changes (projected tokens rotate; a stale one gets 401)."""
        stamp = None
        if self.settings.bearer_token_file:
            st = os.stat(self.settings.bearer_token_file)
            stamp = (st.st_mtime_ns, st.st_size)
        if self._client is None or stamp != self._token_stamp:
            stale, self._client = self._client, self._client_factory(self.settings)
            self._token_stamp = stamp
            close = getattr(stale, "close", None)
            if close is not None:
                await close()
        return self._client

    async def _query(self, promql: str, down: list[str]) -> float | None:
        async with self._limit():
            if down:  # the provider failed while this query waited for a slot
                raise ProviderDown(down[0])
            try:
                client = await self._get_client()
                result = await client.custom_query(promql, params=self.settings.query_params())
            except Exception as exc:
                raise classify(exc) from None
        log.debug("prometheus %s -> %s", promql, result)
        return parse_value(result)

    async def _series(self, promql: str) -> list[tuple[dict[str, str], float]]:
        """A small vector (at most one series per output and side): labels and value of each series."""
        params = self.settings.query_params() | {"limit": str(2 * MAX_COMPARED_OUTPUTS + 2)}
        async with self._limit():
            client = await self._get_client()
            result = await client.custom_query(promql, params=params)
        out = []
        for sample in result if isinstance(result, list) else []:
            try:
                out.append((dict(sample.get("metric") or {}), float(sample["value"][1])))
            except (AttributeError, TypeError, ValueError, IndexError, KeyError):
                continue
        return out

    async def _shift_detail(self, sel: str) -> str | None:
        """'score p50 0.97 (stable 0.62)' for the output that moved most; best effort (None on any trouble)."""
        shifts_query, summaries_query = shift_detail_queries(sel)
        try:
            shifts, summaries = await asyncio.gather(self._series(shifts_query), self._series(summaries_query))
        except Exception as exc:  # the detail is a courtesy: the verdict never depends on it
            log.debug("no shift detail: %s", exc)
            return None
        return shift_detail(shifts, summaries)

    async def _measure(self, candidates: tuple[tuple[str, str], ...], down: list[str]) -> _Measured:
        """First candidate with data wins; a refused query is recorded and the next one tried.

        `down` is shared by one round: after the first outage the remaining queries are skipped, so a
        hanging Prometheus costs one timeout per round, not one per query.
        """
        error: str | None = None
        for source, promql in candidates:
            if down:
                return _Measured(None, outage=down[0])
            try:
                value = await self._query(promql, down)
            except QueryRefused as exc:
                error = str(exc)
                continue
            except ProviderDown as exc:
                down.append(str(exc))
                return _Measured(None, outage=str(exc))
            if value is not None:
                return _Measured(value, source)
        return _Measured(None, None, error)

    async def snapshot(self, query: AnalysisQuery) -> MetricsSnapshot:
        """All queries of one round run concurrently; any outage makes the whole round unavailable."""
        try:
            return await self._snapshot(query)
        except ProviderDown as exc:
            log.warning("metrics unavailable for %s/%s: %s", query.namespace, query.name, exc)
            return MetricsSnapshot(available=False, error=str(exc))
        except Exception as exc:  # never raise into the controller
            log.exception("metrics snapshot failed for %s/%s", query.namespace, query.name)
            return MetricsSnapshot(available=False, error=scrub(f"{type(exc).__name__}: {exc}"))

    async def _snapshot(self, query: AnalysisQuery) -> MetricsSnapshot:
        label, window = self.settings.revision_label, query.window
        canary_sel = selector(query.namespace, query.model, query.canary_revision, label)
        stable_rev = query.stable_revision
        stable_sel = selector(query.namespace, query.model, stable_rev, label) if stable_rev else None
        bounds = configured_slos(query.slo, comparing=query.comparing)
        compared_sel = comparator_selector(query.namespace, query.name, query.canary_revision)
        comparing = any(bound.comparator for bound in bounds)
        jobs: dict[tuple[str, str], asyncio.Task[_Measured]] = {}
        detail: asyncio.Task[str | None] | None = None
        down: list[str] = []
        async with asyncio.TaskGroup() as group:
            jobs["requests", "canary"] = group.create_task(
                self._measure((("counters", requests_query(canary_sel, window)),), down)
            )
            if comparing:
                jobs["compared", "canary"] = group.create_task(
                    self._measure((("counters", compared_query(compared_sel, window)),), down)
                )
                detail = group.create_task(self._shift_detail(compared_sel))
            for role, sel in (("canary", canary_sel), ("stable", stable_sel)):
                if sel is None:
                    continue
                table = builtin_queries(sel, window)
                for bound in bounds:
                    if bound.comparator:  # pairwise: one value, judged as the canary's
                        if role == "canary":
                            pairwise = comparator_queries(compared_sel, window)[bound.name]
                            jobs[bound.name, role] = group.create_task(self._measure(pairwise, down))
                        continue
                    if bound.builtin is not None:
                        jobs[bound.name, role] = group.create_task(self._measure(table[bound.name], down))
                        continue
                    candidates = _custom_candidates(bound.query or "", query, role)
                    if isinstance(candidates, str):
                        jobs[bound.name, role] = group.create_task(_failed(candidates))
                    elif candidates:
                        jobs[bound.name, role] = group.create_task(self._measure(candidates, down))
        if down:
            raise ProviderDown(down[0])
        values: dict[str, MetricValue] = {}
        for key in (bound.name for bound in bounds):
            canary = jobs[key, "canary"].result()
            stable = jobs[key, "stable"].result() if (key, "stable") in jobs else None
            values[key] = MetricValue(
                canary=canary.value,
                stable=stable.value if stable else None,
                error=canary.error or (f"stable: {stable.error}" if stable and stable.error else None),
                source=canary.source or (stable.source if stable else None),
                detail=detail.result() if detail is not None and key == OUTPUT_SHIFT.name else None,
            )
        requests_seen = jobs["requests", "canary"].result()
        compared = jobs["compared", "canary"].result().value if comparing else None
        return MetricsSnapshot(
            available=True, canary_requests=requests_seen.value, values=values, compared=compared
        )


def shift_detail(
    shifts: list[tuple[dict[str, str], float]], summaries: list[tuple[dict[str, str], float]]
) -> str | None:
    """The output with the largest shift, and its median answer on each side."""
    finite = [(labels.get("output", "?"), value) for labels, value in shifts if math.isfinite(value)]
    if not finite:
        return None
    output = max(finite, key=lambda item: item[1])[0]
    p50 = {labels.get("side"): value for labels, value in summaries if labels.get("output") == output}
    if "canary" not in p50 or "stable" not in p50:
        return None
    return f"{output} p50 {p50['canary']:.3g} (stable {p50['stable']:.3g})"


async def _failed(message: str) -> _Measured:
    return _Measured(None, None, message)


def _custom_candidates(template: str, query: AnalysisQuery, role: str) -> tuple[tuple[str, str], ...] | str:
    """The rendered custom query for a role; a message when rendering is refused; () when not measurable."""
    revision = query.canary_revision if role == "canary" else query.stable_revision
    version = query.version if role == "canary" else query.stable_version
    if revision is None:
        return ()
    if version is None and re.search(r"\{\{\s*version\s*\}\}", template):
        return ()  # stable's version unknown: measuring it with the canary's version would be wrong
    variables: Mapping[str, str] = {
        "namespace": query.namespace,
        "name": query.name,
        "revision": revision,
        "model": query.model,
        "version": version or "",
        "interval": query.window,
    }
    try:
        return (("custom", render_query(template, variables)),)
    except ValueError as exc:
        return scrub(f"query refused: {exc}")
