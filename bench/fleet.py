"""The Modelship fleet on the real local API server: objects whose pods become Ready, real step transitions.

`modelship run --namespace bench-XXXX` runs as its own process against the stack's API server. The bench adds
its own kwok nodes (bench/fleet_objects.py), creates N ModelDeployments whose pods kwok makes Ready, and stands
in for Triton and Prometheus (bench/standins.py): a KServe v2 server on every bench pod IP, inside the stack's
pod network namespace, and a Prometheus whose answers pass every SLO. So each object boots v1 through real
Validating (TritonValidator over HTTP on the pod IPs), and a rollout runs every canary step with due SLO checks.

Phases and figures (the keys shared with bench.peers.argo_rollouts are `KEYS`):
1. baseline: API server requests of other clients (the stack is shared) for `--baseline` s, before the operator.
2. settle: operator start, N objects created (8 client threads), until every object is Healthy at v1
   (`first_healthy_s`, `first_reconciled_s`: from operator start).
3. idle (`--idle` s): `idle_requests_per_object_minute` / `idle_writes_per_object_minute`: the operator's own
   requests, counted exactly by `bench.counted` (WATCH apart); the API server's counters minus the baseline
   rate are kept as `idle_apiserver_*_est` (on a shared stack other clients' rate moves more between windows
   than the operator's whole idle rate); `rss_mib_settled` (VmRSS after the window).
4. cold start: the operator is restarted over the N Healthy objects; `cold_start_s` = process start -> as many
   reconciles as objects in its `modelship_reconcile_duration_seconds` count (every object reconciled once).
5. rollout (not with `--settled-only`): `spec.model.version` -> 2 on all objects or `--rolling-fraction` of them;
   steps 10% and 50% for `--step` s each, checks every `--interval` s; until every rolled object is Healthy at
   v2. `writes_per_second_rollout` (the operator's own writes), `cpu_seconds_per_1000_transitions`
   (utime+stime / (stage, step) changes seen by the watch), `step_lateness_p50_s`/`_p99_s`
   (stepStartedAt + step -> arrival of the watch event showing the next step).

The stack is brought up if needed (never down); namespace, nodes and stand-ins are removed at the end.

    python -m bench.fleet [--quick] [--objects N] [--rolling-fraction 0.1] [--step 30] [--idle 120]
    python -m bench.fleet --objects 10000 --settled-only
"""

from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, RESULTS_DIR, table, write_results
from bench.fleet_run import FleetRun
from bench.operator_scale import ensure_stack
from e2e.stack import StackContext

KEYS = ("objects", "cold_start_s", "rss_mib_settled", "rss_mib_per_1000", "idle_requests_per_object_minute",
        "idle_writes_per_object_minute", "writes_per_second_rollout", "cpu_seconds_per_1000_transitions",
        "step_lateness_p50_s", "step_lateness_p99_s", "transitions", "leader_election")


@dataclass
class Options:
    objects: int
    rolling_fraction: float
    step_s: float
    interval_s: float
    idle_s: float
    baseline_s: float
    settled_only: bool
    operator_commit: str | None = None
    run_id: str = field(default_factory=lambda: f"fleet-{uuid.uuid4().hex[:6]}")

    @property
    def rolling(self) -> list[int]:
        """Indices of the objects that roll out, spread evenly over the fleet."""
        if self.settled_only:
            return []
        count = max(1, round(self.objects * self.rolling_fraction))
        return sorted({math.floor(k * self.objects / count) for k in range(count)})


def parse(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=None, help="ModelDeployments (default 1000, --quick 100)")
    parser.add_argument("--quick", action="store_true", help="100 objects, short windows")
    parser.add_argument("--rolling-fraction", type=float, default=1.0, help="share of objects rolled out (0-1]")
    parser.add_argument("--step", type=float, default=None, help="seconds per canary step (default 30, quick 20)")
    parser.add_argument("--interval", type=float, default=10.0, help="analysis interval, s (at least 10)")
    parser.add_argument("--idle", type=float, default=None, help="idle window, s (default 120, quick 30)")
    parser.add_argument("--baseline", type=float, default=None, help="baseline window, s (default 30, quick 15)")
    parser.add_argument("--settled-only", action="store_true", help="no rollout phase (the 10,000-object case)")
    parser.add_argument("--operator-commit", help="run the operator of this git commit (e.g. a 'before' baseline)")
    args = parser.parse_args(argv)
    if not 0 < args.rolling_fraction <= 1:
        parser.error(f"--rolling-fraction must be in (0, 1], got {args.rolling_fraction}; e.g. 0.1 for 10%")
    if args.interval < 10:
        parser.error(f"--interval must be at least 10 s (the operator's shortest PromQL window), got {args.interval}")
    step = args.step or (20.0 if args.quick else 30.0)
    if step < args.interval:
        parser.error(f"--step ({step} s) must be at least --interval ({args.interval} s), or no check runs in it")
    return Options(
        objects=args.objects or (100 if args.quick else 1000),
        rolling_fraction=args.rolling_fraction,
        step_s=step,
        interval_s=args.interval,
        idle_s=args.idle or (30.0 if args.quick else 120.0),
        baseline_s=args.baseline or (15.0 if args.quick else 30.0),
        settled_only=args.settled_only,
        operator_commit=args.operator_commit,
    )


def git_commit() -> str:
    head = (REPO / ".git" / "HEAD").read_text().strip()
    if head.startswith("ref: "):
        ref = REPO / ".git" / head[5:]
        if ref.exists():
            return ref.read_text().strip()[:12]
        packed = (REPO / ".git" / "packed-refs").read_text()
        match = re.search(rf"^([0-9a-f]+) {re.escape(head[5:])}$", packed, re.MULTILINE)
        return match.group(1)[:12] if match else "?"
    return head[:12]


def operator_tree(commit: str) -> Path:
    """The operator package as of `commit`, extracted once under .stack/bench/ (the working tree is untouched)."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=REPO, check=True,
                         capture_output=True, text=True).stdout.strip()
    tree = RESULTS_DIR / f"operator-{sha[:12]}"
    if not (tree / "operator" / "modelship").is_dir():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "operator"], cwd=REPO, check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    return tree / "operator"


def run(stack: StackContext, options: Options) -> dict[str, Any]:
    """Every phase; the returned dict has `KEYS` first, then details."""
    path = operator_tree(options.operator_commit) if options.operator_commit else None
    bench = FleetRun(stack, options.objects, options.rolling, options.step_s, options.interval_s,
                     options.idle_s, options.baseline_s, options.run_id, path)
    figures, details = bench.run()
    missing = set(KEYS) - set(figures)
    if missing:
        raise RuntimeError(f"fleet figures lack {sorted(missing)}")
    return {**{key: figures[key] for key in KEYS}, **details}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    options = parse(argv)
    stack = ensure_stack()
    load_before = os.getloadavg()
    result = run(stack, options)
    result.update(git_commit=git_commit(), operator_commit=options.operator_commit or "working tree",
                  load_average_start=[round(v, 2) for v in load_before],
                  rolling_objects=len(options.rolling), step_s=options.step_s, interval_s=options.interval_s)
    shown = {k: v for k, v in result.items() if not isinstance(v, dict | list)}
    title = (f"fleet: {options.objects} ModelDeployments, {len(options.rolling)} rolled out, real operator, "
             "real API server, stand-in Triton and Prometheus")
    print(table(shown.items(), title))
    for key, value in result.items():
        if isinstance(value, dict | list):
            print(f"  {key}: {value}")
    label = (options.operator_commit or "tree")[:12]
    print(f"  results: {write_results(f'fleet-{options.objects}-{len(options.rolling)}-{label}', result)}")
    return result


if __name__ == "__main__":
    main()

