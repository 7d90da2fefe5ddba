"""Measurements shared by the benches that run a real controller process against the real local API server.

Both sides of the side-by-side comparison (issue 10 item 5) use these, so that a ratio compares like with
like: `bench.peers.argo_rollouts` (Argo Rollouts), `bench.fleet_run` and `bench.operator_scale` (Modelship).

- `ProcessSampler`: VmRSS every second (and VmHWM, the kernel's peak) from /proc/PID/status, and CPU seconds
  (utime + stime) from /proc/PID/stat.
- `scrape_counter` / `parse_counter` / `parse_histogram_counts`: a Prometheus counter (or a histogram's
  observation count) from a /metrics endpoint, summed by some of its labels.
- `apiserver_requests`: the API server's own `apiserver_request_total` by 'VERB resource' (WATCH left out),
  the cross-check that does not trust the controller's own counting; minus a baseline window of other clients
  (`others_rate`), because the stack is shared and the counter has no per-client label.
- `stop_process`: SIGTERM a controller, then SIGKILL if it has not exited after a grace period.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from e2e.stack import StackContext

# The figures both sides of the comparison return, in this order (bench.fleet: Modelship; bench.peers: Argo).
COMPARED_KEYS = ("objects", "cold_start_s", "rss_mib_settled", "rss_mib_per_1000", "idle_requests_per_object_minute",
                 "idle_writes_per_object_minute", "writes_per_second_rollout", "cpu_seconds_per_1000_transitions",
                 "step_lateness_p50_s", "step_lateness_p99_s", "transitions", "leader_election")
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection", "apply"})
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def is_write(verb: str) -> bool:
    """Whether a verb (any case: the API server says POST/PUT/PATCH, client counters say create/update) writes."""
    return verb.lower() in WRITE_VERBS | {"post", "put"}


def http_get(url: str, token: str | None = None, ca: Path | None = None, timeout: float = 30.0) -> str:
    """GET a text endpoint (plain http, or https with the stack's CA and a bearer token)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        return str(response.read().decode())


def parse_samples(text: str, family_name: str, sample_name: str, by: Iterable[str]) -> Counter[str]:
    """Samples `sample_name` of metric family `family_name` summed by the labels `by`, joined by spaces."""
    labels = tuple(by)
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != family_name:
            continue
        for sample in family.samples:
            if sample.name == sample_name:
                out[" ".join(sample.labels.get(label, "") for label in labels)] += int(sample.value)
    return out


def parse_counter(text: str, name: str, by: Iterable[str]) -> Counter[str]:
    """Counter `name` (with or without its `_total` suffix) summed by the labels `by`, joined by spaces."""
    base = name.removesuffix("_total")
    return parse_samples(text, base, f"{base}_total", by)


def parse_histogram_counts(text: str, name: str, by: Iterable[str]) -> Counter[str]:
    """Observation counts (`<name>_count`) of histogram `name` summed by the labels `by`."""
    return parse_samples(text, name, f"{name}_count", by)


def scrape_counter(url: str, name: str, by: Iterable[str]) -> Counter[str]:
    """`parse_counter` of a live /metrics endpoint."""
    return parse_counter(http_get(url, timeout=10.0), name, by)


def apiserver_requests(stack: StackContext, resources: Iterable[str] | None = None) -> Counter[str]:
    """`apiserver_request_total` summed by 'VERB resource[/subresource]'; WATCH left out; all resources if None."""
    wanted = set(resources) if resources is not None else None
    text = http_get(f"{stack.server}/metrics", stack.admin_token, stack.ca_file)
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            labels = sample.labels
            resource = labels.get("resource", "")
            if not sample.name.endswith("_total") or labels.get("verb") == "WATCH":
                continue
            if wanted is not None and resource not in wanted:
                continue
            sub = f"/{labels['subresource']}" if labels.get("subresource") else ""
            out[f"{labels.get('verb')} {resource}{sub}"] += int(sample.value)
    return out


def others_rate(baseline: Counter[str], baseline_s: float, window: Counter[str], window_s: float) -> Counter[str]:
    """Requests in `window` less what other clients did at the baseline's rate (never below zero)."""
    out: Counter[str] = Counter()
    for key, count in window.items():
        ours = count - baseline.get(key, 0) * window_s / baseline_s if baseline_s > 0 else count
        if ours > 0:
            out[key] = round(ours)
    return out


def proc_status_kib(pid: int, key: str) -> int:
    """One `kB` field of /proc/PID/status (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def parse_cpu_seconds(stat_line: str) -> float:
    """utime + stime of a /proc/PID/stat line, in seconds (fields 14 and 15; comm may contain spaces)."""
    fields = stat_line.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime (14) and stime (15) are fields[11] and fields[12].
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds a process has used so far (its own threads; children not included); 0 once gone."""
    try:
        return parse_cpu_seconds(Path(f"/proc/{pid}/stat").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


class ProcessSampler(threading.Thread):
    """VmRSS of one process every second; VmHWM and CPU seconds read on demand."""

    def __init__(self, pid: int, period: float = 1.0) -> None:
        super().__init__(daemon=True, name=f"sampler-{pid}")
        self.pid = pid
        self.period = period
        self.samples: list[tuple[float, int]] = []  # (monotonic time, VmRSS KiB)
        self.stopped = threading.Event()

    def rss_mib(self) -> float:
        return proc_status_kib(self.pid, "VmRSS") / 1024

    def hwm_mib(self) -> float:
        return proc_status_kib(self.pid, "VmHWM") / 1024

    def max_sampled_mib(self) -> float:
        return max((kib for _, kib in self.samples), default=0) / 1024

    def cpu_seconds(self) -> float:
        return proc_cpu_seconds(self.pid)

    def run(self) -> None:
        while not self.stopped.wait(self.period):
            kib = proc_status_kib(self.pid, "VmRSS")
            if kib:
                self.samples.append((time.monotonic(), kib))


def stop_process(proc: subprocess.Popen[Any] | None, timeout: float = 30.0) -> None:
    """SIGTERM `proc` if it still runs (a controller's clean shutdown), SIGKILL it after `timeout` s; reap it."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
