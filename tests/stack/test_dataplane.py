"""Data plane of the local stack: real Triton, fault injection, pod netns, pod runner, Prometheus, traffic.

Standalone tests run real processes on loopback or in a namespace each test creates (10.79.0.0/16,
never the stack's 10.77.0.0/16); ``integration`` tests use the session ``stack`` fixture.
Waits poll for a condition with a deadline and then assert it; nothing sleeps and assumes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import tritonclient.http as th
from kubernetes.client import (
    V1Container,
    V1ContainerPort,
    V1EnvVar,
    V1ExecAction,
    V1Lifecycle,
    V1LifecycleHandler,
    V1ObjectMeta,
    V1Pod,
    V1PodSpec,
    V1PodStatus,
)
from kubernetes.client.rest import ApiException
from modelship.adapters.objects import PIN_SCRIPT

import e2e.stack.dataplane.podrunner as podrunner_module
from e2e.stack.dataplane import podrunner_status, prometheus
from e2e.stack.dataplane.netns import NetnsError, PodNetwork
from e2e.stack.dataplane.podfeed import PodFeed
from e2e.stack.dataplane.podrunner import PodRunner
from e2e.stack.dataplane.podspec import parse_pod, resolve_repository
from e2e.stack.prometheus import Prometheus, scrape_config
from e2e.stack.traffic import Backend, Plan, RouteReader, TrafficGenerator
from e2e.stack.triton import REPOS_DIR, TritonServer, http_ok, start_triton

GW_API = "gateway.networking.k8s.io"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def metric(server: TritonServer | str, name: str, **labels: str) -> float:
    """Sum of a Triton metric over series matching ``labels`` (scraped from /metrics)."""
    url = server if isinstance(server, str) else server.metrics_url
    total = 0.0
    for line in NO_PROXY.open(url, timeout=5).read().decode().splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def infer(endpoint: str, version: str = "") -> th.InferResult:
    inp = th.InferInput("x", [1, 4], "FP32")
    inp.set_data_from_numpy(np.full((1, 4), 0.5, np.float32))
    return th.InferenceServerClient(endpoint).infer("fraud_scorer", [inp], model_version=version)


@pytest.fixture
def triton(tmp_path: Path) -> Iterator[Callable[..., TritonServer]]:
    started: list[TritonServer] = []

    def _start(version: int, repo: str = "main", **kw: Any) -> TritonServer:
        server = start_triton(REPOS_DIR / repo, tmp_path / f"t{len(started)}", version=version, **kw)
        started.append(server)
        return server

    yield _start
    for server in started:
        server.stop()


@pytest.fixture
def netns() -> Iterator[PodNetwork]:
    net = PodNetwork(f"modelship-test-{os.getpid()}", "10.79.0.0/16").up()
    yield net
    net.down()


# -- Triton and the model repositories ---------------------------------------------------------
def test_triton_serves_exactly_the_pinned_version(triton: Callable[..., TritonServer]) -> None:
    server = triton(3)
    assert server.wait_ready(60) < 30
    client = th.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    index = client.get_model_repository_index()
    assert [(m["version"], m["state"]) for m in index] == [("3", "READY")]
    assert not client.is_model_ready("fraud_scorer", "2")
    result = infer(f"127.0.0.1:{server.http_port}")
    assert result.get_response()["model_version"] == "3"
    score = result.as_numpy("score")
    assert score.shape == (1, 1) and score.dtype == np.float32 and 0 < score[0, 0] < 1


@pytest.mark.parametrize(
    ("repo", "output", "dtype"), [("renamed-output", "risk", "FP32"), ("fp64-output", "score", "FP64")]
)
def test_incompatible_repositories_change_the_contract(
    triton: Callable[..., TritonServer], repo: str, output: str, dtype: str
) -> None:
    server = triton(2, repo)
    server.wait_ready(60)
    meta = th.InferenceServerClient(f"127.0.0.1:{server.http_port}").get_model_metadata("fraud_scorer")
    assert meta["outputs"] == [{"name": output, "datatype": dtype, "shape": [-1, 1]}]


def test_live_fault_file_shows_in_failure_counter_and_latency(
    triton: Callable[..., TritonServer], tmp_path: Path
) -> None:
    faults = tmp_path / "faults.json"
    faults.write_text("{}")
    server = triton(4, env={"MODELSHIP_FAULT_FILE": str(faults), "MODELSHIP_REVISION": "abc"})
    server.wait_ready(60)
    endpoint = f"127.0.0.1:{server.http_port}"
    for _ in range(5):
        infer(endpoint)
    assert metric(server, "nv_inference_request_failure", reason="BACKEND") == 0
    # a rule that does not match this revision changes nothing; a matching one fails every request
    faults.write_text(json.dumps({"rules": [
        {"match": {"revision": "other"}, "latency_ms": 1000},
        {"match": {"revision": "abc", "version": "4"}, "error_rate": 1.0},
    ]}))  # fmt: skip
    for _ in range(7):
        with pytest.raises(Exception, match="fault injection"):
            infer(endpoint)
    eventually(lambda: metric(server, "nv_inference_request_failure", reason="BACKEND") == 7, 5, "7 failures")
    assert metric(server, "nv_inference_request_success") == 5
    sum_before = metric(server, "nv_inference_request_summary_us_sum")
    faults.write_text(json.dumps({"latency_ms": 200}))
    t0 = time.monotonic()
    for _ in range(10):
        infer(endpoint)
    assert time.monotonic() - t0 >= 2.0
    assert metric(server, "nv_inference_request_summary_us_sum") - sum_before >= 10 * 200_000
    p90 = metric(server, "nv_inference_request_summary_us", quantile="0.9")
    assert p90 >= 200_000, f"latency summary did not see the injected delay: {p90}us"


def test_env_and_behavior_defaults(triton: Callable[..., TritonServer]) -> None:
    slow = triton(91)  # behavior.json: latency_ms 300
    failing_env = triton(5, env={"MODELSHIP_FAULT_ERROR_RATE": "1"})
    unloadable = triton(92)  # behavior.json: fail_load
    slow.wait_ready(60)
    failing_env.wait_ready(60)
    t0 = time.monotonic()
    infer(f"127.0.0.1:{slow.http_port}")
    assert time.monotonic() - t0 >= 0.3
    with pytest.raises(Exception, match="fault injection"):
        infer(f"127.0.0.1:{failing_env.http_port}")
    with pytest.raises((RuntimeError, TimeoutError)):
        unloadable.wait_ready(30)


# -- network namespace ---------------------------------------------------------------------------
@needs_root
def test_netns_pod_ip_reachable_from_host_and_guarded(netns: PodNetwork) -> None:
    ip = "10.79.4.2"
    netns.add_ip(ip)
    server = subprocess.Popen(
        [*netns.exec_prefix(), sys.executable, "-m", "http.server", "--bind", ip, "8080"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        eventually(lambda: http_ok(f"http://{ip}:8080/"), 10, "http.server inside the namespace")
    finally:
        server.terminate()
        server.wait(5)
    netns.del_ip(ip)
    assert ip not in netns.ips()
    for bad in ("10.78.0.5", "192.0.2.9", netns.host_addr, "127.0.0.1"):
        with pytest.raises((NetnsError, ValueError)):
            netns.add_ip(bad)
    with pytest.raises(NetnsError, match="overlaps"):
        PodNetwork("modelship-test-overlap", "10.79.128.0/17").up()


# -- pod runner ------------------------------------------------------------------------------------
def serving_versions(endpoint: str) -> list[str]:
    """Versions of fraud_scorer that are READY; any other is unloading or unloaded (the pin hook reloads the model
    with a specific version policy after Triton loaded the latest)."""
    index = th.InferenceServerClient(endpoint).get_model_repository_index()
    assert {m["state"] for m in index if m["state"] != "READY"} <= {"UNLOADING", "UNAVAILABLE"}, index
    return [m["version"] for m in index if m["state"] == "READY"]


def fake_pod(name: str, ip: str, version: int, repo: str = "s3://models/triton", **env: str) -> V1Pod:
    args = [
        f"--model-repository={repo}", "--model-control-mode=explicit", "--load-model=fraud_scorer",
        "--metrics-config=summary_latencies=true", "--http-port=8000", "--grpc-port", "8001",
        "--metrics-port=8002", "--strict-readiness=true",
    ]  # fmt: skip
    named = (("http", 8000), ("grpc", 8001), ("metrics", 8002))
    ports = [V1ContainerPort(name=n, container_port=p) for n, p in named]
    envs = [V1EnvVar(name="MODELSHIP_MODEL_NAME", value="fraud_scorer"),
            V1EnvVar(name="MODELSHIP_MODEL_VERSION", value=str(version))]  # fmt: skip
    envs += [V1EnvVar(name=k, value=v) for k, v in env.items()]
    labels = {"app.kubernetes.io/managed-by": "modelship", "modelship.dev/revision": f"rev{version}"}
    pin = V1Lifecycle(post_start=V1LifecycleHandler(_exec=V1ExecAction(command=["python3", "-c", PIN_SCRIPT])))
    return V1Pod(
        metadata=V1ObjectMeta(name=name, namespace="ml", uid=f"{name}-uid", labels=labels),
        spec=V1PodSpec(node_name="gpu-node-0", containers=[V1Container(
            name="triton", image="nvcr.io/nvidia/tritonserver:24.10-py3", command=["tritonserver"],
            args=args, ports=ports, env=envs, lifecycle=pin)]),
        status=V1PodStatus(phase="Running", pod_ip=ip),
    )  # fmt: skip


def test_podspec_contract() -> None:
    raw = fake_pod("a", "10.77.1.5", 7, "s3://bucket/renamed-output", MODELSHIP_FAULT_LATENCY_MS="9")
    pod = parse_pod(raw)
    assert pod.models == ("fraud_scorer",) and pod.version == 7
    assert pod.ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert pod.passthrough == ("--strict-readiness=true",)
    assert pod.env["MODELSHIP_FAULT_LATENCY_MS"] == "9" and not pod.errors
    assert resolve_repository(pod.repository_uri, REPOS_DIR) == REPOS_DIR / "renamed-output"
    assert resolve_repository("s3://models/triton", REPOS_DIR) == REPOS_DIR / "main"
    assert resolve_repository("file:///srv/repo", REPOS_DIR) == Path("/srv/repo")
    assert resolve_repository("s3://m/t", REPOS_DIR, {"s3://m/t": "/x"}) == Path("/x")
    broken = fake_pod("b", "10.77.1.6", 1)
    broken.spec.containers[0].args = ["--load-model=fraud_scorer"]
    broken.spec.containers[0].env = [V1EnvVar(name="MODELSHIP_MODEL_VERSION", value="seven")]
    assert len(parse_pod(broken).errors) == 2


def test_a_comparator_pod_is_read_as_modelship_compare_with_its_service_account() -> None:
    """The operator's comparator pod (objects from modelship.adapters.comparator_objects) parses as a comparator:
    its arguments, ports and ServiceAccount, no repository needed."""
    from modelship.adapters.comparator_objects import deployment  # noqa: PLC0415
    from modelship.domain.actions import EnsureComparator  # noqa: PLC0415
    from modelship.domain.compare_spec import CompareSpec  # noqa: PLC0415
    from modelship.domain.status import Revision  # noqa: PLC0415

    @dataclass(frozen=True)
    class Owner:
        namespace: str = "ml"
        name: str = "fraud-scorer"
        uid: str = "uid-1"

    action = EnsureComparator(Revision(version="2", hash="abc"), CompareSpec(), 25, 10)
    template = deployment(Owner(), action, "modelship:test")["spec"]["template"]
    raw = {"metadata": {**template["metadata"], "name": "fraud-scorer-comparator-x", "namespace": "ml", "uid": "u"},
           "spec": {**template["spec"], "node_name": "gpu-node-0",
                    "service_account_name": template["spec"]["serviceAccountName"]},
           "status": {"phase": "Running", "pod_ip": "10.77.1.9"}}
    for container in raw["spec"]["containers"]:
        container["ports"] = [{"name": p["name"], "container_port": p["containerPort"]} for p in container["ports"]]
    pod = parse_pod(raw)
    assert not pod.errors and pod.comparator_args is not None
    assert pod.comparator_args[:4] == ("--namespace", "ml", "--deployment", "fraud-scorer")
    assert pod.service_account == "fraud-scorer-comparator" and pod.ports == {"http": 8000, "metrics": 8002}
    assert pod.env["MODELSHIP_COMPARE"].startswith("{")


class RecordingNetwork:
    """The pod network as the runner sees it, in memory: which IPs it holds."""

    name, cidr = "fake-pods", "10.79.0.0/16"

    def __init__(self) -> None:
        self.held: set[str] = set()
        self.adds = 0

    def owns(self, ip: str) -> bool:
        return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(self.cidr)

    def add_ip(self, ip: str) -> None:
        self.adds += 1
        self.held.add(ip)

    def del_ip(self, ip: str) -> None:
        self.held.discard(ip)

    def ips(self) -> set[str]:
        return set(self.held)


def test_ip_only_pods_get_their_ip_and_no_tritonserver(tmp_path: Path) -> None:
    """Given pods with PODRUNNER_MODE=ip-only (the fleet bench's), when the runner reconciles them,
    then each IP is held once, no server starts, no scrape target is written, and deletion frees the IP."""
    network = RecordingNetwork()
    runner = PodRunner(network, tmp_path)  # type: ignore[arg-type]
    pods = [fake_pod(name, f"10.79.2.{i}", 1, PODRUNNER_MODE="ip-only") for i, name in enumerate(("a", "b"), 1)]
    assert [parse_pod(p).ip_only for p in pods] == [True, True]
    assert not parse_pod(fake_pod("c", "10.79.2.3", 1, PODRUNNER_MODE="triton")).ip_only
    try:
        runner.reconcile(pods)
        runner.reconcile(pods)  # every watch event reconciles again: the IP is added once
        status = json.loads((tmp_path / "status.json").read_text())["pods"]
        assert network.ips() == {"10.79.2.1", "10.79.2.2"} and network.adds == 2
        assert {key: (pod["ip_only"], pod["pid"], pod["error"]) for key, pod in status.items()} == {
            "ml/a": (True, None, ""), "ml/b": (True, None, "")}  # fmt: skip
        assert json.loads((tmp_path / "targets.json").read_text()) == []
        runner.reconcile(pods[:1])  # pod b deleted
        assert network.ips() == {"10.79.2.1"}
    finally:
        runner.shutdown()
    assert network.ips() == set()


def test_an_unchanged_pod_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given 1,000 ip-only pods, when every pod event reconciles all of them again, then only a pod at a new
    resourceVersion is parsed again (each event used to re-read every pod: the runner fell behind the bench)."""
    reads: list[str] = []

    def counting_parse(raw: Any) -> Any:
        reads.append(raw.metadata.name)
        return parse_pod(raw)

    monkeypatch.setattr(podrunner_module, "parse_pod", counting_parse)
    runner = PodRunner(RecordingNetwork(), tmp_path)  # type: ignore[arg-type]
    pods = [fake_pod(f"p{i}", f"10.79.{i // 200}.{i % 200 + 1}", 1, PODRUNNER_MODE="ip-only") for i in range(1000)]
    for pod in pods:
        pod.metadata.resource_version = "1"
    try:
        runner.reconcile(pods)
        pods[7].metadata.resource_version = "2"
        runner.reconcile(pods)
        assert len(reads) == 1001 and reads[-1] == "p7"
        assert len(json.loads((tmp_path / "status.json").read_text())["pods"]) == 1000
    finally:
        runner.shutdown()


class ScriptedCore:
    """A CoreV1Api whose pod list is `listed` (at resourceVersion `version`); counts the lists."""

    def __init__(self, listed: list[Any], version: str) -> None:
        self.listed, self.version, self.lists = listed, version, 0

    def list_pod_for_all_namespaces(self, **_: Any) -> Any:
        self.lists += 1
        return SimpleNamespace(items=list(self.listed), metadata=SimpleNamespace(resource_version=self.version))


def scripted_feed(core: ScriptedCore, script: list[Any], stop: threading.Event) -> tuple[PodFeed, list[str]]:
    """A PodFeed whose watch requests play `script` in order: a list of events, or an exception to raise;
    stop is set when the script runs out. Returns the feed and the versions each request started from."""
    feed = PodFeed(core, "app.kubernetes.io/managed-by=modelship", stream_s=1)
    started: list[str] = []

    def events(version: str) -> tuple[Iterator[dict[str, Any]], Callable[[], str | None]]:
        started.append(version)
        if not script:
            stop.set()
            time.sleep(0.05)  # an idle watch: the feed may go on asking
            return iter(()), lambda: None
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        last = step[-1]["object"].metadata.resource_version if step else None
        return iter(step), lambda: last

    feed.events = events  # type: ignore[method-assign]
    return feed, started


def event(kind: str, name: str, version: str) -> dict[str, Any]:
    pod = fake_pod(name, "10.79.0.1", 1, PODRUNNER_MODE="ip-only")
    pod.metadata.resource_version = version
    return {"type": kind, "object": pod}


def test_pod_feed_resumes_its_watch_and_relists_only_after_a_failure() -> None:
    """Given a listed pod, when watch requests end normally they resume from the last version seen without a
    relist (every 5 s stream end used to relist all 10,000 bench pods); when one fails (410 Gone), the feed
    relists once and goes on from the new list."""
    stop = threading.Event()
    core = ScriptedCore([event("ADDED", "a", "10")["object"]], "10")
    script: list[Any] = [
        [event("ADDED", "b", "11"), event("MODIFIED", "a", "12")],
        [],  # a quiet stream: ends with nothing new
        [event("DELETED", "b", "13")],
        ApiException(status=410, reason="Expired"),
    ]
    feed, started = scripted_feed(core, script, stop)
    feed.run(stop)
    assert started == ["10", "12", "12", "13", "10"]  # the 410 relisted (at the list's version)
    assert core.lists == 2
    assert sorted(pod.metadata.name for pod in feed.snapshot()) == ["a"]


def test_a_burst_of_pod_events_is_a_few_reconciles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the runner's watch loop, when 2,000 pod events arrive in one burst, then the runner reconciles the
    latest snapshot a few times, not once per event (each pass reads every pod), and ends holding every IP."""
    passes: list[int] = []
    stop = threading.Event()
    pods = [event("ADDED", f"p{i}", str(i + 2)) for i in range(2000)]
    for number, item in enumerate(pods):
        item["object"].status.pod_ip = f"10.79.{number // 200}.{number % 200 + 1}"
    core = ScriptedCore([], "1")
    network = RecordingNetwork()
    network.up = lambda: network  # type: ignore[attr-defined]
    runner = PodRunner(network, tmp_path)  # type: ignore[arg-type]
    original = runner.reconcile

    def counting(snapshot: Any) -> None:
        original(snapshot)
        passes.append(len(snapshot))

    monkeypatch.setattr(runner, "reconcile", counting)
    feed, _ = scripted_feed(core, [pods], threading.Event())
    monkeypatch.setattr(podrunner_module, "PodFeed", lambda *_: feed)
    worker = threading.Thread(target=runner.run_forever, args=(core, stop, 1), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while (not passes or passes[-1] < 2000) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert passes and passes[-1] == 2000 and len(network.ips()) == 2000
        assert len(passes) < 100, f"{len(passes)} passes for 2,000 events"
    finally:
        stop.set()
        worker.join(5)
        runner.shutdown()


@needs_root
def test_podrunner_starts_and_stops_triton_per_pod(netns: PodNetwork, tmp_path: Path) -> None:
    runner = PodRunner(netns, tmp_path)
    pods = [fake_pod("a", "10.79.1.2", 3), fake_pod("b", "10.79.1.3", 6, "s3://x/fp64-output"),
            fake_pod("outside", "10.77.9.9", 1)]  # fmt: skip
    try:
        runner.reconcile(pods)
        status = lambda: json.loads((tmp_path / "status.json").read_text())["pods"]  # noqa: E731
        eventually(lambda: all(p["ready_after_s"] for p in status().values()), 60, "both pods ready")
        assert set(status()) == {"ml/a", "ml/b"}, "a pod outside the CIDR must be skipped"
        targets = json.loads((tmp_path / "targets.json").read_text())  # file_sd for Debian's Prometheus
        assert [t["targets"] for t in targets] == [["10.79.1.2:8002"], ["10.79.1.3:8002"]]
        assert targets[0]["labels"] == {"app_kubernetes_io_managed_by": "modelship", "modelship_dev_revision": "rev3",
                                        "namespace": "ml", "pod": "a", "node": "gpu-node-0"}  # fmt: skip
        # the pod's postStart hook (the operator's pin script) reloaded the model pinned; the latest version,
        # which Triton loaded first, is unloaded (listed as such)
        assert serving_versions("10.79.1.3:8000") == ["6"]
        assert infer("10.79.1.2:8000").get_response()["model_version"] == "3"
        assert metric("http://10.79.1.2:8002/metrics", "nv_inference_request_success", version="3") == 1
        pid_b = status()["ml/b"]["pid"]
        runner.reconcile(pods[:1])  # pod b deleted
        assert "ml/b" not in status() and not Path(f"/proc/{pid_b}").exists()
        assert netns.ips() == {"10.79.1.2"}
        assert not http_ok("http://10.79.1.3:8000/v2/health/ready", timeout=0.5)
    finally:
        runner.shutdown()
    assert netns.ips() == set()


# -- Prometheus and traffic ------------------------------------------------------------------------
def test_prometheus_scrapes_triton_and_survives_restart(triton: Callable[..., TritonServer], tmp_path: Path) -> None:
    server = triton(2)
    server.wait_ready(60)
    infer(f"127.0.0.1:{server.http_port}")
    prom = Prometheus(tmp_path / "prom")
    target = (f"127.0.0.1:{server.metrics_port}", {"modelship_dev_revision": "r2", "namespace": "ml"})
    prom.configure(scrape_config(None, None, None, interval="1s", static_targets=[target]))
    try:
        assert prom.start() < 30
        q = 'nv_inference_request_success{modelship_dev_revision="r2",version="2"}'
        series = eventually(lambda: prom.query(q), 20, "a scraped Triton series")
        assert series[0]["value"][1] == "1"
        prom.stop()
        assert not prom.running()
        with pytest.raises(OSError):
            prom.query("up")
        prom.start()
        assert prom.query('count_over_time(nv_inference_request_success{modelship_dev_revision="r2"}[10m])')
    finally:
        prom.stop()


def test_traffic_follows_weights_and_mirror(triton: Callable[..., TritonServer]) -> None:
    stable, canary = triton(2), triton(3, env={"MODELSHIP_FAULT_ERROR_RATE": "1"})
    stable.wait_ready(60)
    canary.wait_ready(60)
    canary_ep = f"127.0.0.1:{canary.http_port}"
    plan = Plan(
        "static",
        [Backend("stable", 80, [f"127.0.0.1:{stable.http_port}"]), Backend("canary", 20, [canary_ep])],
        mirror=Backend("shadow", 0, [canary_ep]),
        mirror_percent=50,
    )
    t0 = time.monotonic()
    summary = TrafficGenerator(rps=100, count=300, duration=30, static=plan).start().wait(60)
    elapsed = time.monotonic() - t0
    b = summary["backends"]
    assert b["stable"]["sent"] + b["canary"]["sent"] == 300
    assert 2.5 < elapsed < 6, f"300 requests at 100 rps took {elapsed:.1f}s"
    assert 0.10 < b["canary"]["sent"] / 300 < 0.32
    assert b["stable"]["ok"] == b["stable"]["sent"] and b["canary"]["error"] == b["canary"]["sent"]
    assert 0.35 < b["mirror:shadow"]["sent"] / 300 < 0.65
    assert metric(canary, "nv_inference_request_failure", reason="BACKEND") == b["canary"]["sent"] + b[
        "mirror:shadow"]["sent"]  # fmt: skip


def test_route_reader_understands_virtualservice_and_httproute_mirror() -> None:
    reader = object.__new__(RouteReader)
    reader._backend = lambda name, weight: Backend(name, weight, [f"{name}:8000"])  # type: ignore[method-assign]
    vs = {"spec": {"http": [{
        "route": [{"destination": {"host": "fs-stable.ml.svc.cluster.local"}, "weight": 75},
                  {"destination": {"host": "fs-canary"}, "weight": 25}],
        "mirror": {"host": "fs-canary"}, "mirrorPercentage": {"value": 12.5},
    }]}}  # fmt: skip
    route = {"spec": {"rules": [{
        "backendRefs": [{"name": "fs-stable", "port": 8000}],
        "filters": [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "fs-canary", "port": 8000},
            "fraction": {"numerator": 1, "denominator": 4}}}],
    }]}}  # fmt: skip
    reader._objects = lambda group, versions, plural: [vs] if plural == "virtualservices" else []  # type: ignore[method-assign]
    plan = reader.plan()
    assert plan.kind == "virtualservice" and [(b.name, b.weight) for b in plan.backends] == [
        ("fs-stable", 75), ("fs-canary", 25)]  # fmt: skip
    assert plan.mirror is not None and plan.mirror.name == "fs-canary" and plan.mirror_percent == 12.5
    reader._objects = lambda group, versions, plural: [route] if plural == "httproutes" else []  # type: ignore[method-assign]
    plan = reader.plan()
    assert plan.kind == "httproute" and [(b.name, b.weight) for b in plan.backends] == [("fs-stable", 1.0)]
    assert plan.mirror is not None and plan.mirror_percent == 25.0


# -- against the real local stack ------------------------------------------------------------------
def _pod_manifest(name: str, revision: str, version: int, role: str, **env: str) -> dict[str, Any]:
    labels = {"app.kubernetes.io/managed-by": "modelship", "modelship.dev/deployment": "fraud-scorer",
              "modelship.dev/revision": revision, "modelship.dev/role": role}  # fmt: skip
    container = fake_pod(name, "", version).spec.containers[0]
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
            "name": "triton", "image": container.image, "command": container.command, "args": container.args,
            "ports": [{"name": p.name, "containerPort": p.container_port} for p in container.ports],
            "env": [{"name": "MODELSHIP_MODEL_NAME", "value": "fraud_scorer"},
                    {"name": "MODELSHIP_MODEL_VERSION", "value": str(version)}]
            + [{"name": k, "value": v} for k, v in env.items()],
            "lifecycle": {"postStart": {"exec": {"command": ["python3", "-c", PIN_SCRIPT]}}},
            "resources": {"limits": {"nvidia.com/gpu": "1"}},
        }]},
    }  # fmt: skip


def _ready_pod(stack: Any, ns: str, name: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        pod = podrunner_status(stack.stack_dir)["pods"].get(f"{ns}/{name}")
        return pod if pod and pod["ready_after_s"] else None

    return dict(eventually(check, 90, f"pod runner to serve {ns}/{name}"))


@pytest.mark.integration
def test_stack_runs_triton_for_kwok_pod_and_prometheus_sees_its_revision(stack_ns: tuple[Any, str]) -> None:
    from kubernetes import client  # noqa: PLC0415

    stack, ns = stack_ns
    core = client.CoreV1Api(stack.api_client())
    core.create_namespaced_pod(ns, _pod_manifest("triton-a", "rev4abc", 4, "canary"))
    pod = _ready_pod(stack, ns, "triton-a")
    assert ipaddress.ip_address(pod["ip"]) in ipaddress.ip_network("10.77.0.0/16")
    endpoint = f"{pod['ip']}:8000"
    assert serving_versions(endpoint) == ["4"]  # pinned by the pod's postStart hook, as on a cluster
    for _ in range(3):
        infer(endpoint)
    prom = prometheus(stack.stack_dir)
    q = f'nv_inference_request_success{{namespace="{ns}",pod="triton-a",modelship_dev_revision="rev4abc"}}'
    series = eventually(lambda: [s for s in prom.query(q) if s["value"][1] == "3"], 30, "3 successes scraped")
    assert series[0]["metric"]["modelship_dev_role"] == "canary"
    assert series[0]["metric"]["modelship_dev_deployment"] == "fraud-scorer"
    core.delete_namespaced_pod("triton-a", ns, grace_period_seconds=0)
    eventually(lambda: f"{ns}/triton-a" not in podrunner_status(stack.stack_dir)["pods"], 30, "pod runner stop")
    assert not Path(f"/proc/{pod['pid']}").exists()
    assert not http_ok(f"http://{endpoint}/v2/health/ready", timeout=0.5)


@pytest.mark.integration
def test_traffic_follows_httproute_weights_to_real_pods(stack_ns: tuple[Any, str]) -> None:
    from kubernetes import client  # noqa: PLC0415

    stack, ns = stack_ns
    api = stack.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    core.create_namespaced_pod(ns, _pod_manifest("stable-0", "rev2", 2, "stable"))
    core.create_namespaced_pod(ns, _pod_manifest("canary-0", "rev3", 3, "canary", MODELSHIP_FAULT_ERROR_RATE="1"))
    for role, rev in (("stable", "rev2"), ("canary", "rev3")):
        core.create_namespaced_service(ns, {
            "metadata": {"name": f"fraud-scorer-{role}", "labels": {
                "app.kubernetes.io/managed-by": "modelship", "modelship.dev/deployment": "fraud-scorer",
                "modelship.dev/role": role}},
            "spec": {"selector": {"modelship.dev/revision": rev},
                     "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]},
        })  # fmt: skip
    custom.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", ns, "httproutes", {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": "fraud-scorer", "labels": {"modelship.dev/deployment": "fraud-scorer"}},
        "spec": {"rules": [{"backendRefs": [
            {"name": "fraud-scorer-stable", "port": 8000, "weight": 70},
            {"name": "fraud-scorer-canary", "port": 8000, "weight": 30}]}]},
    })  # fmt: skip
    stable, canary = _ready_pod(stack, ns, "stable-0"), _ready_pod(stack, ns, "canary-0")
    reader = RouteReader(api, ns, "fraud-scorer")
    routed = lambda: (p := reader.plan()).backends and all(b.endpoints for b in p.backends) and p  # noqa: E731
    plan = eventually(routed, 60, "EndpointSlices for both Services")
    assert plan.kind == "httproute"
    assert {b.name: b.endpoints for b in plan.backends} == {
        "fraud-scorer-stable": [f"{stable['ip']}:8000"],
        "fraud-scorer-canary": [f"{canary['ip']}:8000"],
    }
    summary = TrafficGenerator(reader=reader, rps=50, count=150, duration=30).start().wait(60)
    b = summary["backends"]
    assert b["fraud-scorer-stable"]["ok"] == b["fraud-scorer-stable"]["sent"] > 70, summary
    assert b["fraud-scorer-canary"]["error"] == b["fraud-scorer-canary"]["sent"] > 15
    assert b["fraud-scorer-canary"]["role"] == "canary"
    prom = prometheus(stack.stack_dir)
    q = f'sum(nv_inference_request_failure{{namespace="{ns}",modelship_dev_revision="rev3"}})'
    want = str(b["fraud-scorer-canary"]["sent"])
    eventually(lambda: [s for s in prom.query(q) if s["value"][1] == want], 30, f"{want} canary failures")


def test_one_data_plane_per_host(tmp_path: Path) -> None:
    from e2e.stack.dataplane import _claim, _owner, _owner_file  # noqa: PLC0415

    net = PodNetwork(f"modelship-claim-{os.getpid()}", "10.79.0.0/16")
    a, b = tmp_path / "a", tmp_path / "b"
    (b / "dataplane").mkdir(parents=True)
    (b / "dataplane" / "podrunner.pid").write_text(str(os.getpid()))  # b's runner is "alive"
    try:
        _claim(net, b)
        assert _owner(net) == str(b.resolve())
        with pytest.raises(RuntimeError, match="in use by the stack at"):
            _claim(net, a)
        (b / "dataplane" / "podrunner.pid").write_text("999999999")  # b's runner died: the claim lapses
        _claim(net, a)
        assert _owner_file(net).read_text().strip() == str(a.resolve())
    finally:
        _owner_file(net).unlink(missing_ok=True)
