"""PrometheusSource without a server: query strings, result parsing and error mapping with a fake client."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import certifi
import pytest
from engine_fixtures import T0, make_spec
from modelship.adapters.metrics.base import AnalysisQuery, MetricsSource
from modelship.adapters.metrics.bounded import PrometheusAnswered, Unreachable
from modelship.adapters.metrics.factory import PROMETHEUS_URL_ANNOTATION, MetricsSettings, MetricsSources
from modelship.adapters.metrics.prometheus import (
    PrometheusSettings,
    PrometheusSource,
    ProviderDown,
    QueryRefused,
    connect,
    parse_value,
    scrub,
)
from modelship.adapters.metrics.queries import (
    average_query,
    builtin_queries,
    comparator_queries,
    error_rate_query,
    quantile_query,
    requests_query,
    selector,
)
from modelship.domain.analysis import assess
from modelship.domain.slo_spec import Slo
from modelship.domain.slos import BUILTIN_SLOS, configured_slos
from modelship.domain.status import Verdict

SEL = 'namespace="ml",model="fraud_scorer",modelship_dev_revision="c1"'
SLO = Slo.model_validate(
    {
        "errorRate": {"max": 0.01},
        "latencyP99Ms": {"max": 250, "maxRatioToStable": 1.2},
        "custom": [
            {"name": "conf", "min": 0.5,
             "query": 'avg(conf{namespace="{{namespace}}",revision="{{revision}}"})'}
        ],
    }
)
Responder = Callable[[str], Any]
RANGE_VECTOR = [{"metric": {}, "values": [[1700000000.0, "1"], [1700000001.0, "2"]]}]


def vec(value: str) -> list[dict[str, Any]]:
    return [{"metric": {}, "value": [1700000000.0, value]}]


class FakeClient:
    """Stands in for the query client: answers by calling `respond(query)`, raising what it returns."""

    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.queries: list[str] = []

    async def custom_query(self, query: str, params: dict[str, str] | None = None) -> Any:
        self.queries.append(query)
        answer = self.respond(query)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def source(respond: Responder, **settings: Any) -> tuple[PrometheusSource, FakeClient]:
    fake = FakeClient(respond)
    src = PrometheusSource(PrometheusSettings(url="http://prom:9090", **settings), lambda _s: fake)
    return src, fake


def aq(stable: str | None = "s1", slo: Slo = SLO, stable_version: str | None = "6") -> AnalysisQuery:
    return AnalysisQuery(
        "ml", "fraud", "fraud_scorer", "7", "c1", stable, 60, slo, stable_version=stable_version
    )


def healthy(query: str) -> Any:
    if "quantile=" in query:
        return vec("30" if '"c1"' in query else "25")
    if query.startswith("(sum(increase(nv_inference_request_failure") and "/" in query:
        return vec("0.002" if '"c1"' in query else "0.001")
    if query.startswith("(sum(increase(nv_inference_request_success"):
        return vec("480")
    if query.startswith("avg(conf"):
        return vec("0.8")
    return []


# --- query strings -----------------------------------------------------------------------------------------


def test_selector_scopes_namespace_model_and_revision() -> None:
    assert selector("ml", "fraud_scorer", "c1") == SEL
    assert selector("ml", "m", "c1", "rev") == 'namespace="ml",model="m",rev="c1"'
    assert selector('a"b', "m", "r") == 'namespace="a\\"b",model="m",modelship_dev_revision="r"'
    with pytest.raises(ValueError, match="label name"):
        selector("ml", "m", "r", "modelship.dev/revision")


def test_requests_query_distinguishes_no_series_from_zero() -> None:
    ok = f"sum(increase(nv_inference_request_success{{{SEL}}}[60s]))"
    bad = f"sum(increase(nv_inference_request_failure{{{SEL}}}[60s]))"
    young = f"count(nv_inference_request_success{{{SEL}}}) * 0"
    assert requests_query(SEL, "60s") == f"({ok} or {bad} * 0 or {young}) + ({bad} or vector(0))"


def test_error_rate_is_failures_over_all() -> None:
    bad = f"sum(increase(nv_inference_request_failure{{{SEL}}}[5m]))"
    assert error_rate_query(SEL, "5m") == f"({bad} or vector(0)) / ({requests_query(SEL, '5m')})"


def test_quantile_and_average_queries() -> None:
    assert quantile_query("nv_inference_request_summary_us", SEL, "0.99") == (
        f'max(nv_inference_request_summary_us{{{SEL},quantile="0.99"}} >= 0) / 1000'
    )
    assert average_query("nv_inference_queue_duration_us", SEL, "60s") == (
        f"sum(increase(nv_inference_queue_duration_us{{{SEL}}}[60s])) / "
        f"sum(increase(nv_inference_request_success{{{SEL}}}[60s])) / 1000"
    )


def test_window_never_zero() -> None:
    assert aq().window == "60s"
    assert AnalysisQuery("a", "b", "c", "1", "r", None, 0, Slo()).window == "1s"


# --- parsing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "expected"),
    [([], None), (vec("NaN"), None), (vec("0.25"), 0.25), (vec("0"), 0.0), ([1.0, "3"], 3.0)],
)
def test_parse_value(result: Any, expected: float | None) -> None:
    assert parse_value(result) == expected


@pytest.mark.parametrize(
    ("result", "error"),
    [(vec("1") + vec("2"), QueryRefused), (vec("+Inf"), QueryRefused), ({"x": 1}, ProviderDown),
     (vec("abc"), ProviderDown), (["oops"], ProviderDown), ([1.0, "text"], QueryRefused),
     (RANGE_VECTOR, QueryRefused)],
)
def test_parse_value_errors(result: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_value(result)


# --- snapshots ---------------------------------------------------------------------------------------------


async def test_snapshot_measures_canary_and_stable() -> None:
    src, fake = source(healthy)
    assert isinstance(src, MetricsSource)
    snap = await src.snapshot(aq())
    assert snap.available and snap.canary_requests == 480.0
    assert snap.values["errorRate"].canary == 0.002 and snap.values["errorRate"].stable == 0.001
    p99 = snap.values["latencyP99Ms"]
    assert (p99.canary, p99.stable, p99.source) == (30.0, 25.0, "summary")
    assert snap.values["conf"].canary == 0.8 and snap.values["conf"].stable == 0.8
    assert 'avg(conf{namespace="ml",revision="s1"})' in fake.queries
    assert all('namespace="ml"' in q for q in fake.queries)
    assert set(snap.values) == {"errorRate", "latencyP99Ms", "conf"}  # only configured SLOs


async def test_latency_falls_back_to_average_when_summary_is_empty() -> None:
    def respond(query: str) -> Any:
        if "quantile=" in query:
            return []  # NaN summaries are filtered by `>= 0`
        if query.startswith("sum(increase(nv_inference_request_duration_us"):
            return vec("12.5")
        return healthy(query)

    snap = await source(respond)[0].snapshot(aq())
    assert snap.values["latencyP99Ms"].canary == 12.5 and snap.values["latencyP99Ms"].source == "average"


async def test_nan_and_empty_are_no_data_not_errors() -> None:
    snap = await source(lambda q: vec("NaN") if "/" in q else [])[0].snapshot(aq(stable=None))
    assert snap.available and snap.canary_requests is None
    assert snap.values["errorRate"] == snap.values["errorRate"].__class__(canary=None)
    assert snap.values["latencyP99Ms"].canary is None and snap.values["latencyP99Ms"].error is None


@pytest.mark.parametrize(
    "failure",
    [
        Unreachable("cannot connect to Prometheus: connection refused or unreachable"),
        Unreachable("Prometheus timed out"),
        PrometheusAnswered(503, b"overloaded"),
        PrometheusAnswered(401, b"Unauthorized"),
        PrometheusAnswered(502, b"<html>bad gateway</html>"),
        ValueError("Expecting value: line 1 column 1"),
        KeyError("data"),
    ],
)
async def test_provider_failures_make_the_round_unavailable(failure: Exception) -> None:
    src, _ = source(lambda q: failure, bearer_token="s3cret-token")
    snap = await src.snapshot(aq())
    assert not snap.available and snap.values == {} and snap.error
    assert "s3cret" not in snap.error and "s3cret" not in repr(src.settings)


async def test_an_outage_stops_the_round_early() -> None:
    src, fake = source(lambda q: Unreachable("cannot connect to Prometheus: down"), max_concurrency=1)
    await src.snapshot(aq())
    assert len(fake.queries) == 1


async def test_refused_custom_query_is_a_metric_error_not_an_outage() -> None:
    body = b'{"status":"error","errorType":"bad_data","error":"parse error: unexpected \\"by\\""}'

    def respond(query: str) -> Any:
        if query.startswith("avg(conf"):
            return PrometheusAnswered(400, body)
        return healthy(query)

    snap = await source(respond)[0].snapshot(aq())
    assert snap.available
    assert snap.values["conf"].canary is None
    assert snap.values["conf"].error == 'HTTP 400: parse error: unexpected "by"'


async def test_custom_query_reading_another_namespace_is_never_sent() -> None:
    slo = Slo.model_validate(
        {"custom": [{"name": "leak", "min": 0,
                     "query": 'sum(x{namespace="{{namespace}}"}) + sum(x{namespace="other"})'}]}
    )
    src, fake = source(healthy)
    snap = await src.snapshot(aq(slo=slo))
    assert snap.available and snap.values["leak"].canary is None
    assert snap.values["leak"].error and "query refused" in snap.values["leak"].error
    assert not any('"other"' in q for q in fake.queries)


async def test_stable_custom_query_needs_stable_version() -> None:
    slo = Slo.model_validate(
        {"custom": [{"name": "v", "min": 0,
                     "query": 'sum(x{namespace="{{namespace}}",version="{{version}}"})'}]}
    )
    src, fake = source(lambda q: vec("1"))
    snap = await src.snapshot(aq(slo=slo, stable_version=None))
    assert snap.values["v"].canary == 1.0 and snap.values["v"].stable is None
    assert fake.queries.count('sum(x{namespace="ml",version="7"})') == 1
    assert len([q for q in fake.queries if q.startswith("sum(x")]) == 1


async def test_unexpected_bug_is_reported_not_raised() -> None:
    src = PrometheusSource(PrometheusSettings(url="http://prom"), lambda _s: 1 / 0)  # type: ignore[arg-type,return-value]
    snap = await src.snapshot(aq())
    assert not snap.available and snap.error


# --- connection settings, scrubbing, factory ---------------------------------------------------------------


def test_connect_sets_auth_and_ca(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    client = connect(PrometheusSettings(url="https://prom/", bearer_token_file=str(token), ca_file=certifi.where()))
    assert client.headers == {"Authorization": "Bearer abc"} and client.url == "https://prom"
    assert isinstance(client.ssl, ssl.SSLContext) and client.ssl.verify_mode == ssl.CERT_REQUIRED
    assert connect(PrometheusSettings(url="https://prom")).ssl is True  # the system's CAs
    basic = connect(PrometheusSettings(url="http://prom", basic_auth=("u", "p"), insecure_skip_verify=True))
    assert basic.auth == aiohttp.BasicAuth("u", "p") and basic.ssl is False and basic.headers == {}


def test_scrub_removes_credentials() -> None:
    text = scrub("GET https://user:pw@prom:9090/api failed, Authorization: Bearer abc.def")
    assert "pw" not in text and "abc.def" not in text and "prom:9090" in text
    assert len(scrub("x" * 1000)) == 300


def test_factory_namespace_override_without_credentials() -> None:
    base = PrometheusSettings(url="http://prom:9090", bearer_token="t0ken")
    built: list[PrometheusSettings] = []

    def build(s: PrometheusSettings) -> MetricsSource:
        built.append(s)
        return PrometheusSource(s, lambda _s: FakeClient(healthy))

    sources = MetricsSources(MetricsSettings(base), build)
    default = sources.for_namespace({})
    assert sources.for_namespace(None) is default and built == [base]
    team = sources.for_namespace({PROMETHEUS_URL_ANNOTATION: "https://team-prom:9090"})
    assert team is not default and built[-1].url == "https://team-prom:9090"
    assert built[-1].bearer_token is None
    for bad in ("ftp://x", "http://u:p@x", "not a url"):
        assert sources.settings_for({PROMETHEUS_URL_ANNOTATION: bad}) is base
    trusting = MetricsSources(MetricsSettings(base, forward_credentials_to_overrides=True), build)
    assert trusting.settings_for({PROMETHEUS_URL_ANNOTATION: "https://t"}).bearer_token == "t0ken"
    locked = MetricsSources(MetricsSettings(base, allow_namespace_override=False), build)
    assert locked.settings_for({PROMETHEUS_URL_ANNOTATION: "https://t"}) is base


async def test_rotated_token_file_rebuilds_the_client(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one")
    seen: list[str] = []

    def build(settings: PrometheusSettings) -> FakeClient:
        seen.append(Path(str(settings.bearer_token_file)).read_text())
        return FakeClient(healthy)

    src = PrometheusSource(PrometheusSettings(url="http://prom", bearer_token_file=str(token)), build)
    await src.snapshot(aq())
    await src.snapshot(aq())
    token.write_text("second")
    await src.snapshot(aq())
    assert seen == ["one", "second"]


# --- one list of SLOs: what is judged is what is measured ---------------------------------------------------


async def test_spec_without_slo_block_measures_the_default_error_rate() -> None:
    src, fake = source(healthy)
    snap = await src.snapshot(aq(slo=Slo()))
    assert snap.values["errorRate"].canary == 0.002 and snap.values["errorRate"].stable == 0.001
    assert any("nv_inference_request_failure" in q and "/" in q for q in fake.queries)


@pytest.mark.parametrize(
    "slo",
    [Slo(), SLO, Slo.model_validate({"queueP99Ms": {"max": 5}, "latencyP95Ms": {"max": 9}}),
     Slo.model_validate({"custom": SLO.model_dump(by_alias=True)["custom"]})],
)
async def test_every_slo_judged_is_measured(slo: Slo) -> None:
    snap = await source(healthy)[0].snapshot(aq(slo=slo))
    assert set(snap.values) == {bound.name for bound in configured_slos(slo)}


# --- one bad custom SLO is an Error for that SLO only ------------------------------------------------------

@pytest.mark.parametrize(
    ("answer", "words"), [(RANGE_VECTOR, "range vector"), ([1700000000.0, "hello"], "string")]
)
async def test_custom_query_of_the_wrong_type_is_an_error_for_that_slo_only(answer: Any, words: str) -> None:
    def respond(query: str) -> Any:
        if query.startswith("avg(conf"):
            return answer
        if query.startswith("(sum(increase(nv_inference_request_failure") and "/" in query:
            return vec("0.2")  # a real breach that must stay visible
        return healthy(query)

    snap = await source(respond)[0].snapshot(aq())
    assert snap.available, snap.error
    assert snap.values["errorRate"].canary == 0.2
    conf = snap.values["conf"]
    assert conf.canary is None and conf.error and words in conf.error
    spec = make_spec(slo=SLO.model_dump(by_alias=True, exclude_none=True))
    record = assess(spec, snap, T0)
    verdicts = {m.name: m.verdict for m in record.metrics}
    assert record.verdict == Verdict.FAIL and verdicts["errorRate"] == Verdict.FAIL
    assert verdicts["conf"] == Verdict.ERROR


def test_catalogue_covers_every_builtin_bound_of_the_spec_and_each_has_queries() -> None:
    ratio_fields = {name for name in Slo.model_fields if name != "custom"}
    assert {entry.field for entry in BUILTIN_SLOS} == ratio_fields
    assert set(builtin_queries(SEL, "60s")) == {entry.name for entry in BUILTIN_SLOS if not entry.comparator}
    assert set(comparator_queries(SEL, "60s")) == {entry.name for entry in BUILTIN_SLOS if entry.comparator}
    assert [entry.name for entry in BUILTIN_SLOS] == [
        "errorRate", "latencyP99Ms", "latencyP95Ms", "queueP99Ms", "outputAgreement", "outputShift"]
    assert all(entry.description for entry in BUILTIN_SLOS)
