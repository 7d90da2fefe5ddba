"""One query's cost is bounded: series asked for, bytes read and time, against a fake Prometheus on 127.0.0.1."""

from __future__ import annotations

import gzip
import json
import threading
import tracemalloc
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from modelship.adapters.metrics.base import AnalysisQuery
from modelship.adapters.metrics.bounded import AnswerTooLarge
from modelship.adapters.metrics.prometheus import PrometheusSettings, PrometheusSource, connect
from modelship.domain.slo_spec import Slo

WIDE = 'count_over_time({__name__=~".+",namespace="{{namespace}}"}[{{interval}}])'
SLO = Slo.model_validate(
    {"errorRate": {"max": 0.01}, "custom": [{"name": "wide", "max": 1, "query": WIDE}]}
)
SERIES = 40_000  # about 6 MB of JSON, far more once decoded into Python objects


def _vector(series: list[dict[str, Any]]) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}}).encode()


def _wide_body() -> bytes:
    return _vector([
        {"metric": {"__name__": f"m_{i}", "namespace": "ml", "pod": f"pod-{i:06d}-" + "x" * 80},
         "value": [1700000000.0, "1"]}
        for i in range(SERIES)
    ])


def _one(value: str) -> bytes:
    return _vector([{"metric": {}, "value": [1700000000.0, value]}])


TIMED_OUT = json.dumps(
    {"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"}
).encode()


class FakePrometheus:
    """/api/v1/query over HTTP, recording every request's parameters; answers gzip when asked.

    Bodies are encoded before any test measures memory: the server shares the test's process.
    """

    def __init__(self) -> None:
        self.params: list[dict[str, list[str]]] = []
        wide = _wide_body()
        answers = {"wide": (200, wide), "wide-gzip": (200, gzip.compress(wide)), "timeout": (503, TIMED_OUT),
                   "errors": (200, _one("0.002")), "other": (200, _one("500"))}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                params = parse_qs(urlsplit(self.path).query)
                outer.params.append(params)
                query = params["query"][0]
                gzipped = "gzip" in self.headers.get("Accept-Encoding", "")
                if "__name__" in query:
                    key = "wide-gzip" if gzipped else "wide"
                elif "timeout_me" in query:
                    key = "timeout"
                else:
                    key = "errors" if "nv_inference_request_failure" in query and "/" in query else "other"
                status, data = answers[key]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if key == "wide-gzip":
                    self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()
    yield fake
    fake.close()


def _query(slo: Slo = SLO) -> AnalysisQuery:
    return AnalysisQuery("ml", "fraud", "fraud_scorer", "7", "c1", None, 60, slo)


async def test_every_query_asks_for_few_series_and_a_prometheus_timeout(prometheus: FakePrometheus) -> None:
    source = PrometheusSource(PrometheusSettings(url=prometheus.url, timeout_s=5.0))
    await source.snapshot(_query(Slo()))
    assert prometheus.params
    for params in prometheus.params:
        assert params["limit"] == ["2"] and params["timeout"] == ["4000ms"]


async def test_broad_custom_query_is_an_error_for_that_slo_with_bounded_memory(prometheus: FakePrometheus) -> None:
    source = PrometheusSource(PrometheusSettings(url=prometheus.url, timeout_s=5.0))
    tracemalloc.start()
    try:
        snap = await source.snapshot(_query())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert snap.available, snap.error
    wide = snap.values["wide"]
    assert wide.canary is None and wide.error is not None
    assert "answer larger than 262144 bytes" in wide.error and "aggregate it to one" in wide.error
    assert snap.values["errorRate"].canary == 0.002  # the other SLOs are still measured
    assert peak < 8 * 1024 * 1024, f"peak Python allocations {peak} bytes"


async def test_gzip_answer_is_bounded_after_decoding(prometheus: FakePrometheus) -> None:
    client = connect(PrometheusSettings(url=prometheus.url, max_response_bytes=4096))
    with pytest.raises(AnswerTooLarge):
        await client.custom_query('{__name__=~".+",namespace="ml"}')
    await client.close()


async def test_query_timed_out_in_prometheus_is_an_error_for_that_slo_only(prometheus: FakePrometheus) -> None:
    slo = Slo.model_validate({"custom": [{"name": "slow", "max": 1,
                                          "query": 'sum(timeout_me{namespace="{{namespace}}"})'}]})
    source = PrometheusSource(PrometheusSettings(url=prometheus.url))
    snap = await source.snapshot(_query(slo))
    assert snap.available, snap.error
    error = snap.values["slow"].error
    assert error is not None and "gave up evaluating the query" in error and "timed out" in error
