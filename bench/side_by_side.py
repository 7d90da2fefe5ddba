"""Modelship beside Argo Rollouts v1.10.2, in one run, on the same local API server, at the same N.

Runs `bench.fleet` (the real `modelship run`, stand-in Triton and Prometheus) and then
`bench.peers.argo_rollouts` (the real `rollouts-controller`, built from its Go module) with the same number of
objects, the same share rolled out and the same step length (Modelship canary steps of 10% and 50% for
`--step` s; Argo `setWeight: 10`, `pause`, `setWeight: 50`, `pause` of the same length), leader election on
or off for both, and prints each figure side by side with the ratio Modelship / Argo Rollouts (the goal is
<= 1.0 on each: less memory, fewer requests and writes, less CPU, later by less, faster cold start).

Both run SLO checks every `--interval` s against the same kind of Prometheus stand-in: Modelship its
built-in error-rate and p99 queries per role (with its status write of the evidence), Argo Rollouts a
background AnalysisRun of three queries (error rate, p99, request count; its AnalysisRun status writes).
What differs and is not hidden: Modelship also asks Triton (the stand-in) for model readiness and metadata
before traffic moves, and writes Events per step. The two controllers run one after the other, so other
clients of the shared stack may differ between the two halves; both halves subtract a baseline where they use
API-server counters, and the request and write figures are each controller's own counts.

    python -m bench.side_by_side [--objects 1000] [--rolling-fraction 0.1] [--step 30] [--interval 10]
                                 [--leader-election off]
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from bench import fleet
from bench.common import table, write_results
from bench.operator_scale import ensure_stack
from bench.peers import argo_rollouts

RATIOS = (
    ("rss_mib_per_1000", "RSS per 1,000 objects (MiB)"),
    ("idle_requests_per_object_minute", "idle API requests / object / minute"),
    ("idle_writes_per_object_minute", "idle API writes / object / minute"),
    ("writes_per_second_rollout", "writes / s during the rollout"),
    ("cpu_seconds_per_1000_transitions", "CPU s / 1,000 step transitions"),
    ("step_lateness_p99_s", "step lateness p99 (s)"),
    ("step_lateness_p50_s", "step lateness p50 (s)"),
    ("cold_start_s", "cold start (s)"),
)


def ratio(ours: Any, theirs: Any) -> str:
    if not isinstance(ours, int | float) or not isinstance(theirs, int | float):
        return "n/a"
    if theirs == 0:
        return "0 / 0" if ours == 0 else "inf (peer 0)"
    return f"{ours / theirs:.2f}"


def compare(ours: dict[str, Any], theirs: dict[str, Any]) -> list[tuple[str, Any, Any, str]]:
    return [(label, ours.get(key), theirs.get(key), ratio(ours.get(key), theirs.get(key))) for key, label in RATIOS]


def render(rows: list[tuple[str, Any, Any, str]], title: str) -> str:
    def cell(value: Any) -> str:
        return f"{value:,.3f}" if isinstance(value, float) else str(value)

    width = max(len(r[0]) for r in rows)
    lines = [title, "-" * len(title), f"  {'figure'.ljust(width)}  {'Modelship':>12}  {'Argo':>12}  ratio"]
    lines += [f"  {label.ljust(width)}  {cell(a):>12}  {cell(b):>12}  {r}" for label, a, b, r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.side_by_side", description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 objects, short windows")
    parser.add_argument("--rolling-fraction", type=float, default=0.1)
    parser.add_argument("--step", type=float, default=30.0, help="seconds per canary step / pause")
    parser.add_argument("--interval", type=float, default=10.0, help="SLO check interval, s (both controllers)")
    parser.add_argument("--idle", type=float, default=120.0)
    parser.add_argument("--leader-election", choices=("on", "off"), default="on")
    args = parser.parse_args(argv)
    objects = 100 if args.quick else args.objects
    idle = 30.0 if args.quick else args.idle
    leader = args.leader_election == "on"
    stack = ensure_stack()
    os.environ["MODELSHIP_LEADER_ELECTION"] = "true" if leader else "false"
    fleet_argv = ["--objects", str(objects), "--rolling-fraction", str(args.rolling_fraction),
                  "--step", str(args.step), "--interval", str(args.interval), "--idle", str(idle)]
    ours = fleet.run(stack, fleet.parse(fleet_argv))
    rolling = max(1, round(objects * args.rolling_fraction))
    figures, _ = argo_rollouts.run(stack, objects, pause_s=args.step, idle_s=idle, rows=(leader,), rolling=rolling,
                                   interval_s=args.interval)
    theirs = figures[0]
    rows = compare(ours, theirs)
    title = (f"Modelship / Argo Rollouts v1.10.2: {objects} objects, {rolling} rolled out, steps of {args.step:.0f} s, "
             f"leader election {args.leader_election}, load {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(render(rows, title))
    print(table([(k, ours[k]) for k in fleet.KEYS], "Modelship figures"))
    print(table([(k, theirs[k]) for k in fleet.KEYS], "Argo Rollouts figures"))
    result = {"modelship": {k: ours[k] for k in fleet.KEYS}, "argo_rollouts": {k: theirs[k] for k in fleet.KEYS},
              "ratios": {label: r for label, _, _, r in rows}, "objects": objects, "rolling": rolling,
              "step_s": args.step, "leader_election": leader}
    print(f"  results: {write_results(f'side_by_side-{objects}-{args.leader_election}', result)}")
    return result


if __name__ == "__main__":
    main()
