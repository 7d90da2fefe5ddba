"""Leader failover on the real local API server: two `modelship run` replicas on one Lease, the leader lost
while every object is in its first canary step.

Set-up as bench.fleet (its own kwok nodes, stand-in Triton and Prometheus whose answers pass every SLO, so
rollouts take real step transitions without live traffic), with N objects and two operator processes watching
the bench namespace (leader election on, default timing: lease 10 s, renew deadline 7 s, retry 2 s).

Each run: `spec.model.version` bumped on every object; once all are at canary step 1, the Lease holder is
SIGKILLed (`--kill`, a crashed pod) or SIGSTOPped (`--stop`, a frozen one; SIGCONT once the standby leads, and
it must exit on its own). Measured from the signal: `lease_acquired_s` (the standby's identity on the Lease,
polled every 0.1 s) and `first_write_s` (the first ModelDeployment status write the watch delivers). Checked:
every rollout goes through its steps once each, forward (`steps_repeated_or_skipped`), and the first write
after the kill is at the step each object was at (`objects_not_resumed_at_same_step`). A new replica is then
started, so every run begins with a leader and a standby.

    python -m bench.failover [--kill | --stop] [--runs 3] [--objects 5] [--step 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import percentile, table, write_results
from bench.fleet_objects import create_nodes, manifest, version_patch
from bench.fleet_run import FleetRun
from bench.operator_scale import ensure_stack
from e2e.failover import GROUP, PLURAL, VERSION, LeaseProbe, StatusWatch
from e2e.harness import OperatorProcess, wait_for
from e2e.rollout_watch import assert_monotone_path
from e2e.stack import StackContext

STEPS = 2
"""bench.fleet_objects.manifest: two timed canary steps (10% and 50%)."""


class Replica(OperatorProcess):
    """One operator replica watching the bench namespace only (so both derive the same Lease)."""

    def __init__(self, stack: StackContext, namespace: str, prometheus_url: str, log_dir: Path) -> None:
        super().__init__(stack, extra_env={"MODELSHIP_PROMETHEUS_URL": prometheus_url})
        self.namespace = namespace
        self.log_path = log_dir / f"replica-{uuid.uuid4().hex[:6]}.log"

    def scope(self) -> list[str]:
        return ["--namespace", self.namespace]

    @property
    def pid(self) -> int:
        assert self.proc is not None, "replica not started"
        return self.proc.pid


class FailoverBench:
    def __init__(self, stack: StackContext, objects: int, step_s: float, fault: str) -> None:
        run_id = f"fleet-fo{uuid.uuid4().hex[:6]}"
        self.fleet = FleetRun(stack, objects, [], step_s, interval_s=5.0, idle_s=0.0, baseline_s=0.0, run_id=run_id)
        self.stack, self.objects, self.step_s, self.fault = stack, objects, step_s, fault
        self.namespace = self.fleet.namespace
        self.replicas: list[Replica] = []
        self.names = [self.fleet.name(i) for i in range(objects)]

    def replica(self) -> Replica:
        replica = Replica(self.stack, self.namespace, self.fleet.standins.prometheus_url, self.fleet.logs)
        replica.start()
        self.replicas.append(replica)
        return replica

    def all_at(self, version: str, what: str, pred: Any, timeout: float) -> None:
        def probe() -> bool:
            listed = self.fleet.api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]
            status = [item.get("status") or {} for item in listed if item["spec"]["model"]["version"] == version]
            return len(status) == self.objects and all(pred(s) for s in status)

        wait_for(f"every object {what} on version {version}", probe, timeout=timeout, interval=0.5)

    def run(self, runs: int) -> list[dict[str, Any]]:
        from kubernetes import client  # noqa: PLC0415

        self.fleet.api = client.CustomObjectsApi(self.stack.api_client())
        self.fleet.logs.mkdir(parents=True, exist_ok=True)
        try:
            create_nodes(self.stack, self.fleet.run_id, self.objects * (runs + 2) + 10)
            self.stack.run_kubectl("create", "namespace", self.namespace)
            self.fleet.standins.start()
            self.replica()
            self.replica()
            for i, name in enumerate(self.names):
                body = manifest(name, self.namespace, i, self.fleet.run_id, self.step_s, 5.0)
                self.fleet.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
            self.all_at("1", "Healthy", lambda s: s.get("phase") == "Healthy", timeout=180)
            with StatusWatch(self.stack, self.namespace) as watch:
                return [self.one(watch, str(run + 2)) for run in range(runs)]
        finally:
            for replica in self.replicas:
                if replica.alive() and replica.proc is not None:
                    os.killpg(replica.proc.pid, signal.SIGCONT)
                replica.kill(signal.SIGTERM)
            self.fleet.cleanup()

    def one(self, watch: StatusWatch, version: str) -> dict[str, Any]:
        """One failover during a rollout to `version`."""
        lease = LeaseProbe(self.stack, self.namespace)
        live = {r.pid: r for r in self.replicas if r.alive()}
        leader = live[lease.held_by(set(live), timeout=60)]
        standby = next(r for r in live.values() if r is not leader)
        for name in self.names:
            self.fleet.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                          version_patch(version))
        self.all_at(version, "at canary step 1", lambda s: s.get("stage") == "Canary" and s.get("step") == 0,
                    timeout=120)
        time.sleep(2)
        killed_at = time.monotonic()
        before = {name: next(reversed(watch.of(name)), None) for name in self.names}
        row: dict[str, Any] = {"version": version}
        if self.fault == "kill":
            leader.kill(signal.SIGKILL)
        else:
            assert leader.proc is not None
            os.killpg(leader.proc.pid, signal.SIGSTOP)
        lease.held_by({standby.pid}, timeout=120)
        row["lease_acquired_s"] = time.monotonic() - killed_at
        first = wait_for("the standby's first status write", lambda: min(
            (w.t for name in self.names if (w := watch.first_after(name, killed_at))), default=None), timeout=120)
        row["first_write_s"] = first - killed_at
        if self.fault == "stop":
            assert leader.proc is not None
            old = leader.proc
            os.killpg(old.pid, signal.SIGCONT)
            resumed = time.monotonic()
            wait_for("the resumed old leader to exit", lambda: old.poll() is not None, timeout=60)
            row["old_leader_exit_s"] = time.monotonic() - resumed
            row["old_leader_said_lost"] = "lost Lease" in leader.log_path.read_text(errors="replace")
        self.all_at(version, "Healthy", lambda s: s.get("phase") == "Healthy"
                    and (s.get("stableRevision") or {}).get("version") == version, timeout=self.step_s * 4 + 120)
        time.sleep(1)
        row["steps_repeated_or_skipped"] = sum(not self.monotone(watch, name) for name in self.names)
        row["objects_not_resumed_at_same_step"] = sum(
            not self.resumed_in_place(before[name], watch.first_after(name, killed_at)) for name in self.names)
        self.replica()  # a new standby for the next run
        print(f"  {self.fault} {version}: lease {row['lease_acquired_s']:.1f}s, "
              f"first write {row['first_write_s']:.1f}s", flush=True)
        return row

    @staticmethod
    def monotone(watch: StatusWatch, name: str) -> bool:
        try:
            assert_monotone_path(watch.positions(name), steps=STEPS)
        except AssertionError:
            return False
        return True

    @staticmethod
    def resumed_in_place(before: Any, after: Any) -> bool:
        """The first write after the kill is at the step of the last write before it (or the next one, if that
        step's time ran out meanwhile), on the same canary."""
        if before is None or after is None:
            return False
        return bool(after.canary == before.canary and after.stage == before.stage
                    and after.step is not None and before.step is not None and after.step - before.step in (0, 1))


def summarise(fault: str, objects: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    lease = [r["lease_acquired_s"] for r in rows]
    write = [r["first_write_s"] for r in rows]
    figures: dict[str, Any] = {
        "fault": fault, "objects": objects, "runs": len(rows),
        "lease_acquired_p50_s": percentile(lease, 50), "lease_acquired_max_s": max(lease),
        "first_write_p50_s": percentile(write, 50), "first_write_max_s": max(write),
        "steps_repeated_or_skipped": sum(r["steps_repeated_or_skipped"] for r in rows),
        "objects_not_resumed_at_same_step": sum(r["objects_not_resumed_at_same_step"] for r in rows),
    }
    if fault == "stop":
        figures["old_leader_exit_max_s"] = max(r["old_leader_exit_s"] for r in rows)
        figures["old_leader_said_lost"] = all(r["old_leader_said_lost"] for r in rows)
    figures["per_run"] = rows
    return figures


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--kill", dest="fault", action="store_const", const="kill", help="SIGKILL the leader")
    mode.add_argument("--stop", dest="fault", action="store_const", const="stop",
                      help="SIGSTOP the leader, SIGCONT it once the standby leads")
    parser.add_argument("--runs", type=int, default=3, help="failovers, one per rollout (default 3)")
    parser.add_argument("--objects", type=int, default=5, help="ModelDeployments rolling out (default 5)")
    parser.add_argument("--step", type=float, default=30.0, help="seconds per canary step (default 30)")
    parser.add_argument("--quick", action="store_true", help="one run")
    args = parser.parse_args(argv)
    fault = args.fault or "kill"
    runs = 1 if args.quick else args.runs
    if runs < 1 or args.objects < 1 or args.step < 20:
        parser.error("--runs and --objects must be >= 1, --step >= 20 (the failover must fit in a step)")
    bench = FailoverBench(ensure_stack(), args.objects, args.step, fault)
    figures = summarise(fault, args.objects, bench.run(runs))
    print(table([(k, v) for k, v in figures.items() if k != "per_run"], f"failover ({fault}, {runs} runs)"))
    print(f"results: {write_results(f'failover-{fault}', figures)}")
    return figures


if __name__ == "__main__":
    main()
