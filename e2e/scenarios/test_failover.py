"""Failover (issue 10 item 4): two operator replicas on one Lease, the leader lost mid-canary.

The leader is SIGKILLed (a crashed pod) or SIGSTOPped (a frozen or partitioned one, resumed after the standby
took over). The standby must take the Lease and carry the rollout on at the step it was at, never taking a step
twice or skipping one, never recording a history entry or announcing a decision (Event) twice; a resumed old
leader must not write and exits on its own.

Timings are measured and printed (lease 10 s, renew deadline 7 s, retry 2 s: takeover is expected within about
15 s of the kill); only a generous bound is asserted.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from e2e.conftest import OperatorFactory, printed_figures
from e2e.failover import LeaseProbe, StatusWatch, duplicated_events, events_of
from e2e.harness import Kubectl, OperatorProcess, status_when, wait_for
from e2e.manifests import model_deployment
from e2e.rollout_watch import assert_monotone_path, triton_ready
from e2e.stack import StackContext
from e2e.stack.traffic import TrafficGenerator

pytestmark = pytest.mark.e2e

NAME = "fraud"
STEPS: list[dict[str, Any]] = [{"weight": 20, "duration": "40s"}, {"weight": 50, "duration": "40s"}]
GENEROUS_S = 60.0
"""An upper bound far above the expected ~15 s: a failed takeover, not a slow one, fails the scenario."""


def pid_of(op: OperatorProcess) -> int:
    assert op.proc is not None, "operator not started"
    return op.proc.pid


def resume(op: OperatorProcess) -> None:
    if op.alive():
        assert op.proc is not None
        os.killpg(op.proc.pid, signal.SIGCONT)


@pytest.mark.parametrize("fault", ["kill", "stop"])
def test_standby_takes_over_mid_canary_without_repeating_a_step(
    kubectl: Kubectl, namespace: str, operator: OperatorFactory, traffic: Callable[..., TrafficGenerator],
    stack: StackContext, fault: str, request: pytest.FixtureRequest,
) -> None:
    """Given two operator replicas on one Lease and v2 at canary step 1 (20%) under live traffic,
    when the replica holding the Lease is SIGKILLed (kill) or SIGSTOPped (stop; SIGCONT once the standby leads),
    then the standby holds the Lease and its first status write shows the same step, the rollout goes through
    every step once and finishes Healthy on v2, status.history records every transition once, no decision is
    announced twice in Events, and (stop) the resumed old leader writes nothing and exits on its own."""
    ns = namespace
    lease = LeaseProbe(stack, ns)
    first, second = operator(ns), operator(ns)
    by_pid = {pid_of(first): first, pid_of(second): second}
    kw: dict[str, Any] = {"steps": STEPS, "progress_deadline": "120s"}
    with printed_figures(f"failover ({fault})") as fig, StatusWatch(stack, ns) as watch:
        # Given: v1 Healthy, one replica leading, the other standing by; v2 at step 1 under traffic.
        kubectl.apply(model_deployment(NAME, ns, "1", **kw))
        status_when(kubectl, ns, "v1 Healthy", lambda s: s.get("phase") == "Healthy", timeout=180)
        triton_ready(kubectl, ns, NAME)
        traffic(ns, NAME)
        leader = by_pid[lease.held_by(set(by_pid))]
        standby = next(op for op in by_pid.values() if op is not leader)
        events_before = {e["name"] for e in events_of(stack, ns, NAME)}
        kubectl.apply(model_deployment(NAME, ns, "2", **kw))
        at_step = status_when(kubectl, ns, "v2 at canary step 1",
                              lambda s: s.get("stage") == "Canary" and s.get("step") == 0, timeout=60, interval=0.2)
        canary = at_step["canaryRevision"]["hash"]
        time.sleep(3)  # well inside the 40 s step
        before = kubectl.status(NAME, ns)
        assert (before.get("stage"), before.get("step")) == ("Canary", 0), before

        # When: the leader is lost.
        killed_at = time.monotonic()
        if fault == "kill":
            leader.kill(signal.SIGKILL)
        else:
            assert leader.proc is not None
            os.killpg(leader.proc.pid, signal.SIGSTOP)
            request.addfinalizer(lambda: resume(leader))  # never leave a stopped process behind a failure

        # Then: the standby leads, and its first status write is at the same step.
        lease.held_by({pid_of(standby)}, timeout=GENEROUS_S)
        fig["lease_acquired_s"] = round(time.monotonic() - killed_at, 1)
        first_write = wait_for("the standby's first status write",
                               lambda: watch.first_after(NAME, killed_at), timeout=GENEROUS_S, interval=0.1)
        fig["first_status_write_s"] = round(first_write.t - killed_at, 1)
        assert (first_write.canary, first_write.stage, first_write.step) == (canary, "Canary", 0), first_write
        if fault == "stop":
            assert leader.proc is not None
            old = leader.proc
            os.killpg(old.pid, signal.SIGCONT)
            resumed_at = time.monotonic()
            wait_for("the resumed old leader to exit on its own", lambda: old.poll() is not None, timeout=GENEROUS_S)
            fig["old_leader_exit_after_resume_s"] = round(time.monotonic() - resumed_at, 1)
            fig["old_leader_exit_code"] = old.returncode
            log = leader.log_path.read_text(errors="replace")
            assert "lost Lease" in log, leader.tail()
            assert lease.held_by({pid_of(standby)}, timeout=5) == pid_of(standby)

        done = status_when(kubectl, ns, "v2 Healthy", lambda s: s.get("phase") == "Healthy"
                           and (s.get("stableRevision") or {}).get("version") == "2", timeout=150)
        time.sleep(2)  # the watch delivers the last writes
        fig["path"] = [p[1:3] for p in watch.positions(NAME) if p[0] == canary]
        fig["weights"] = watch.weights(NAME, canary)
        assert_monotone_path(watch.positions(NAME), steps=len(STEPS))
        assert fig["weights"] == [20, 50], fig["weights"]
        transitions = [(h["event"], h["reason"]) for h in done.get("history") or [] if h["version"] == "2"]
        fig["history_v2"] = [event for event, _ in transitions]
        assert len(transitions) == len(set(transitions)), f"a transition was recorded twice: {transitions}"
        assert [event for event, _ in transitions].count("Promoted") == 1, transitions
        events = [e for e in events_of(stack, ns, NAME) if e["name"] not in events_before]
        fig["events_v2"] = [e["reason"] for e in events]
        assert events, "the rollout of v2 announced nothing"
        assert duplicated_events(events) == [], f"a decision was announced twice: {duplicated_events(events)}"
