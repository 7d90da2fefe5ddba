"""PrometheusSource against a real Prometheus scraping real tritonserver metrics on 127.0.0.1.

Static targets carry the labels Kubernetes discovery would attach (namespace, pod, modelship_dev_revision),
so the adapter's selectors are exercised exactly as in a cluster. Traffic is deterministic: the canary's
fault file makes exactly 50 of its 200 requests fail and adds 20 ms per request.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import tracemalloc
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from modelship.adapters.metrics.base import AnalysisQuery
from modelship.adapters.metrics.prometheus import PrometheusSettings, PrometheusSource
from modelship.domain.slo_spec import Slo
from tritonclient.utils import InferenceServerException

from e2e.stack import triton
from e2e.stack.prometheus import Prometheus, scrape_config
from e2e.stack.triton import TritonServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

NS, MODEL = "ml", "fraud_scorer"
OK, FAILED, STABLE_OK, SLOW_OK = 150, 50, 100, 20
SLO = Slo.model_validate(
    {
        "errorRate": {"max": 0.01},
        "latencyP99Ms": {"max": 250, "maxRatioToStable": 1.2},
        "latencyP95Ms": {"max": 120},
        "queueP99Ms": {"max": 50},
        "custom": [
            {
                "name": "successes",
                "query": 'sum(increase(nv_inference_request_success{namespace="{{namespace}}",'
                'modelship_dev_revision="{{revision}}"}[{{interval}}]))',
                "min": 1,
            },
            # refused by the operator's guard before sending (does not parse)
            {"name": "broken", "query": 'sum(rate(nope{namespace="{{namespace}}"}[5m]) by', "max": 1},
            # passes the guard (a newer PromQL function) but Prometheus 2.42 answers 400
            {"name": "unsupported", "max": 1,
             "query": 'sort_by_label(nv_inference_count{namespace="{{namespace}}"}, "pod")'},
        ],
    }
)


@dataclass
class Stack:
    prometheus: Prometheus
    servers: dict[str, TritonServer]
    source: PrometheusSource


def _infer(server: TritonServer, count: int) -> int:
    """Send `count` requests; return how many failed."""
    client = httpclient.InferenceServerClient(f"{server.address}:{server.http_port}")
    x = httpclient.InferInput("x", [1, 4], "FP32")
    x.set_data_from_numpy(np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32))
    failed = 0
    for _ in range(count):
        try:
            client.infer(MODEL, [x])
        except InferenceServerException:
            failed += 1
    client.close()
    return failed


def _scalar(prom: Prometheus, promql: str) -> float | None:
    result = prom.query(promql)
    return float(result[0]["value"][1]) if result else None


def _wait_scraped(prom: Prometheus, revision: str, success: int, failure: int, timeout: float = 30.0) -> None:
    sel = f'namespace="{NS}",modelship_dev_revision="{revision}"'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ok = _scalar(prom, f"sum(nv_inference_request_success{{{sel}}})")
        bad = _scalar(prom, f"sum(nv_inference_request_failure{{{sel}}})")
        if ok == success and bad == failure:
            return
        time.sleep(0.5)
    raise TimeoutError(f"{revision}: Prometheus never saw {success}/{failure}")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root: Path = tmp_path_factory.mktemp("prom")
    faults = root / "faults.json"
    faults.write_text(json.dumps({"latency_ms": 20}))
    plan: dict[str, tuple[int, dict[str, str]]] = {
        "stable": (1, {}),
        "canary": (2, {"MODELSHIP_FAULT_FILE": str(faults)}),
        "nosummary": (3, {"MODELSHIP_FAULT_LATENCY_MS": "20"}),
        "idle": (4, {}),
    }
    servers: dict[str, TritonServer] = {}
    prom = Prometheus(root / "prometheus")
    try:
        for name, (version, env) in plan.items():
            servers[name] = triton.start_triton(triton.REPOS_DIR / "main", root / name, model=MODEL,
                                                version=version, env=env)
        for server in servers.values():
            server.wait_ready()
        targets = [
            (f"127.0.0.1:{servers[n].metrics_port}", {"namespace": NS, "pod": f"{n}-0",
                                                      "modelship_dev_revision": f"{n}hash"})
            for n in servers
        ]
        # the stable server again, as another tenant's pod with the canary's revision hash: must never count
        targets.append((f"localhost:{servers['stable'].metrics_port}",
                        {"namespace": "other", "pod": "x-0", "modelship_dev_revision": "canaryhash"}))
        config = scrape_config(None, None, None, interval="1s", static_targets=targets)
        # "nosummary" plays a Triton started without summary_latencies: its summaries never reach Prometheus
        for entry in config["scrape_configs"][0]["static_configs"]:
            if entry["labels"]["pod"] == "nosummary-0":
                config["scrape_configs"][0]["static_configs"].remove(entry)
                config["scrape_configs"].append({
                    "job_name": "nosummary", "static_configs": [entry],
                    "metric_relabel_configs": [
                        {"source_labels": ["__name__"], "regex": "nv_.*_summary_us.*", "action": "drop"}
                    ],
                })
                break
        prom.configure(config)
        prom.start()
        for name in servers:  # counters must be seen at 0 first, or increase() misses the traffic
            _wait_scraped(prom, f"{name}hash", 0, 0)
        assert _infer(servers["canary"], OK) == 0
        faults.write_text(json.dumps({"latency_ms": 20, "error_rate": 1.0}))
        assert _infer(servers["canary"], FAILED) == FAILED
        faults.write_text(json.dumps({"latency_ms": 20}))
        assert _infer(servers["stable"], STABLE_OK) == 0
        assert _infer(servers["nosummary"], SLOW_OK) == 0
        _wait_scraped(prom, "canaryhash", OK, FAILED)
        _wait_scraped(prom, "stablehash", STABLE_OK, 0)
        _wait_scraped(prom, "nosummaryhash", SLOW_OK, 0)
        _wait_scraped(prom, "idlehash", 0, 0)
        source = PrometheusSource(PrometheusSettings(url=prom.url, timeout_s=5.0))
        yield Stack(prom, servers, source)
    finally:
        prom.stop()
        for server in servers.values():
            server.stop()


def query(canary: str, stable: str | None = None, window: int = 120, slo: Slo = SLO) -> AnalysisQuery:
    return AnalysisQuery(NS, "fraud-scorer", MODEL, "2", f"{canary}hash", f"{stable}hash" if stable else None,
                         window, slo, stable_version="1")


async def test_canary_and_stable_values(stack: Stack) -> None:
    t0 = time.monotonic()
    snap = await stack.source.snapshot(query("canary", "stable"))
    elapsed = time.monotonic() - t0
    assert snap.available, snap.error
    v = snap.values
    print(f"\nsnapshot in {elapsed * 1000:.0f} ms: requests={snap.canary_requests} " + ", ".join(
        f"{k}={m.canary}/{m.stable} ({m.source})" for k, m in v.items()))
    assert snap.canary_requests is not None and 200 <= snap.canary_requests <= 240  # increase() extrapolates
    assert v["errorRate"].canary == pytest.approx(FAILED / (OK + FAILED), abs=1e-9)
    assert v["errorRate"].stable == 0.0
    p99, p95 = v["latencyP99Ms"], v["latencyP95Ms"]
    assert p99.source == "summary" and p99.canary is not None and 19.0 <= p99.canary < 200
    assert p95.canary is not None and 19.0 <= p95.canary <= p99.canary
    assert p99.stable is not None and p99.stable < p99.canary  # stable has no injected latency
    assert v["queueP99Ms"].canary is not None and 0 <= v["queueP99Ms"].canary < 50
    successes = v["successes"]
    assert successes.canary is not None and OK <= successes.canary <= OK * 1.2
    assert successes.stable is not None and STABLE_OK <= successes.stable <= STABLE_OK * 1.2
    assert v["broken"].canary is None and v["broken"].error and "not valid PromQL" in v["broken"].error
    assert v["unsupported"].canary is None and v["unsupported"].error
    assert v["unsupported"].error.startswith("HTTP 400: ")
    assert elapsed < 2.0


async def test_latency_falls_back_to_counter_average(stack: Stack) -> None:
    snap = await stack.source.snapshot(query("nosummary"))
    p99 = snap.values["latencyP99Ms"]
    assert p99.source == "average" and p99.canary is not None and 19.0 <= p99.canary < 100
    assert snap.values["errorRate"].canary == 0.0


async def test_idle_revision_is_zero_requests_and_no_data(stack: Stack) -> None:
    snap = await stack.source.snapshot(query("idle"))
    assert snap.available and snap.canary_requests == 0.0
    for key in ("errorRate", "latencyP99Ms", "latencyP95Ms", "queueP99Ms"):
        assert snap.values[key].canary is None and snap.values[key].error is None, key


async def test_unknown_revision_is_no_data(stack: Stack) -> None:
    snap = await stack.source.snapshot(query("missing"))
    assert snap.available and snap.canary_requests is None
    assert all(m.canary is None for m in snap.values.values() if m.error is None)


async def test_hanging_prometheus_times_out_as_unavailable() -> None:
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        source = PrometheusSource(PrometheusSettings(url=url, timeout_s=0.5, bearer_token="s3cret"))
        t0 = time.monotonic()
        snap = await source.snapshot(query("canary", "stable"))
        elapsed = time.monotonic() - t0
    assert not snap.available and snap.error == "Prometheus timed out"
    assert elapsed < 2.0, elapsed
    print(f"\nhanging Prometheus -> unavailable in {elapsed * 1000:.0f} ms")


async def test_stopped_prometheus_is_unavailable(stack: Stack) -> None:
    """Last on purpose: stops the module's Prometheus."""
    stack.prometheus.stop()
    t0 = time.monotonic()
    snap = await stack.source.snapshot(query("canary", "stable"))
    elapsed = time.monotonic() - t0
    assert not snap.available and snap.values == {}
    assert snap.error is not None and "cannot connect to Prometheus" in snap.error
    assert elapsed < 1.0
    print(f"\nstopped Prometheus -> unavailable in {elapsed * 1000:.0f} ms: {snap.error}")




# --- a broad custom query costs the operator a bounded amount (issue 8 item 4) ----------------------------

WIDE_SERIES = 20_000
BROAD = '{__name__=~".+",namespace="{{namespace}}"}'


class WideExporter:
    """A scrape target with WIDE_SERIES series in namespace "ml", as a tenant's chatty exporter would have."""

    def __init__(self) -> None:
        pad = "x" * 120
        body = "".join(f'wide_series{{i="{i:06d}",pad="{pad}"}} 1\n' for i in range(WIDE_SERIES)).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    exporter = WideExporter()
    prom = Prometheus(tmp_path_factory.mktemp("wide") / "prometheus")
    try:
        targets = [(exporter.address, {"namespace": NS, "pod": "wide-0", "modelship_dev_revision": "widehash"})]
        prom.configure(scrape_config(None, None, None, interval="5s", static_targets=targets))
        prom.start()
        wait_for_series = time.monotonic() + 60
        while _scalar(prom, f'count(wide_series{{namespace="{NS}"}})') != WIDE_SERIES:
            assert time.monotonic() < wait_for_series, "Prometheus never scraped the wide exporter"
            time.sleep(0.5)
        yield prom
    finally:
        prom.stop()
        exporter.close()


def _answer_bytes(prom: Prometheus, promql: str) -> int:
    url = f"{prom.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=30) as answer:
        return len(answer.read())


async def test_broad_custom_query_is_an_error_of_that_slo_with_bounded_memory(wide: Prometheus) -> None:
    """Given 20k series in the namespace, when a custom SLO selects all of them, then the operator reads at most
    its byte bound, that SLO is an Error saying why, and the round's other SLOs are still measured."""
    slo = Slo.model_validate({"errorRate": {"max": 0.01}, "custom": [
        {"name": "everything", "max": 1, "query": BROAD},
        {"name": "series", "min": 1, "query": 'sum(wide_series{namespace="{{namespace}}"})'},
    ]})
    source = PrometheusSource(PrometheusSettings(url=wide.url, timeout_s=5.0))
    full = _answer_bytes(wide, BROAD.replace("{{namespace}}", NS))
    tracemalloc.start()
    try:
        snap = await source.snapshot(query("wide", slo=slo))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"\nbroad query: Prometheus' full answer {full / 2**20:.1f} MiB; operator peak Python allocations "
          f"{peak / 2**20:.2f} MiB; error: {snap.values['everything'].error}")
    assert snap.available, snap.error
    everything = snap.values["everything"]
    assert everything.canary is None and everything.error is not None
    assert "answer larger than 262144 bytes" in everything.error and "aggregate it to one" in everything.error
    assert snap.values["series"].canary == WIDE_SERIES
    assert full > 16 * 262144 and peak < 2 * 2**20
