"""Shared bench helpers: varied specs, percentiles, a plain-text table and the results file.

Benchmarks print numbers; they never assert on timings. Results also go to `.stack/bench/<name>.json`
(git-ignored) so a run can be compared with the figures in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelship.domain.observations import MetricsSnapshot, MetricValue

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(os.environ.get("MODELSHIP_STACK_DIR", REPO / ".stack")) / "bench"

ROUTERS = ("gatewayAPI", "istio", "none")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean in milliseconds."""
    if not seconds:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}
    return {
        "p50_ms": percentile(seconds, 50) * 1e3,
        "p95_ms": percentile(seconds, 95) * 1e3,
        "p99_ms": percentile(seconds, 99) * 1e3,
        "max_ms": max(seconds) * 1e3,
        "mean_ms": sum(seconds) / len(seconds) * 1e3,
    }


def table(rows: Iterable[tuple[str, Any]], title: str) -> str:
    """Two-column table: metric, value (floats rounded to 3 significant decimals)."""
    rendered = [(k, f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
                for k, v in rows]
    width = max((len(k) for k, _ in rendered), default=10)
    lines = [title, "-" * len(title)]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rendered]
    return "\n".join(lines)


def write_results(name: str, figures: dict[str, Any]) -> Path:
    """Save one bench's figures with when and where they were taken."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "bench": name,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()},
        "figures": figures,
    }
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


def varied_spec(i: int, version: str, rng: random.Random) -> dict[str, Any]:
    """A raw spec (as in a manifest) that differs by router, shadow, steps, approval gates, SLOs and replicas.

    Timings are in seconds-scale units so a simulated rollout has a realistic number of checks per step.
    """
    router = ROUTERS[i % len(ROUTERS)]
    interval = rng.choice((10, 30, 60))
    n_steps = 1 + i % 4
    weights = sorted(rng.sample(range(5, 96, 5), n_steps))
    steps: list[dict[str, Any]] = [
        {"weight": w, "duration": f"{interval * rng.randint(1, 3)}s"} for w in weights
    ]
    if i % 7 == 0:
        steps.insert(rng.randint(0, len(steps)), {"approval": {}})
    rollout: dict[str, Any] = {
        "canary": {"steps": steps},
        "analysis": {"interval": f"{interval}s", "failureLimit": rng.randint(1, 3), "minRequests": 50},
        "progressDeadline": f"{interval * 10}s",
        "scaleDownDelay": "30s",
        "gpuSurge": ("Allow", "ScaleDownStable", "Never")[i % 3],
    }
    if router != "none" and i % 2 == 0:
        rollout["shadow"] = {"mirrorPercent": rng.choice((10, 50, 100)), "duration": f"{interval * 2}s",
                             "compare": {"enabled": False}}  # the fleet benches measure the operator alone
    slo: dict[str, Any] = {"errorRate": {"max": 0.01}}
    if i % 2 == 0:
        slo["latencyP99Ms"] = {"max": 250, "maxRatioToStable": 1.5}
    if i % 3 == 0:
        slo["latencyP95Ms"] = {"max": 120}
        slo["queueP99Ms"] = {"max": 50}
    if i % 5 == 0:
        slo["custom"] = [{"name": "confidence", "min": 0.5,
                          "query": 'avg(model_confidence{namespace="{{namespace}}",revision="{{revision}}"})'}]
    routes: dict[str, dict[str, Any]] = {
        "gatewayAPI": {"gatewayAPI": {"parentRefs": [{"name": "inference-gw"}]}},
        "istio": {"istio": {"hosts": [f"m{i}.bench.svc.cluster.local"]}},
        "none": {"none": {}},
    }
    traffic = routes[router]
    return {
        "model": {"name": f"model_{i % 50}", "version": version, "repository": "s3://models/triton"},
        "serving": {"replicas": 1 + i % 4, "resources": {"gpus": i % 2, "cpu": "1", "memory": "2Gi"}},
        "traffic": traffic,
        "rollout": rollout,
        "slo": slo,
        "validation": {"contract": "Strict"},
    }


def snapshot(spec_slo: dict[str, Any], healthy: bool, requests: float = 500.0) -> MetricsSnapshot:
    """Synthetic Prometheus answer for every SLO the spec declares: well inside or far outside the bounds."""
    values: dict[str, MetricValue] = {
        "errorRate": MetricValue(canary=0.001 if healthy else 0.2, stable=0.001),
        "latencyP99Ms": MetricValue(canary=90.0 if healthy else 900.0, stable=85.0, source="summary"),
        "latencyP95Ms": MetricValue(canary=60.0 if healthy else 600.0, stable=55.0, source="summary"),
        "queueP99Ms": MetricValue(canary=2.0 if healthy else 200.0, stable=2.0, source="summary"),
    }
    for custom in spec_slo.get("custom") or []:
        values[custom["name"]] = MetricValue(canary=0.9 if healthy else 0.1)
    return MetricsSnapshot(available=True, canary_requests=requests, values=values)


def in_process_options(module: str, doc: str, argv: list[str] | None) -> tuple[int, int]:
    """The in-process benches' shared CLI (`--objects`, `--quick`, `--seed`) -> (objects, seed)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.splitlines()[0])
    parser.add_argument("--objects", type=int, default=None, help="ModelDeployments (default 1000, --quick 200)")
    parser.add_argument("--quick", action="store_true", help="short run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    return args.objects or (200 if args.quick else 1000), args.seed
