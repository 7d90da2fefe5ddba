"""Leader election against the real local API server (e2e/stack): Leases, resourceVersions and all.

- Two candidates: exactly one leads; the leader renews with one PUT per round, the standby reads once per round
  (the rates are printed: `-s` shows them).
- A leader process SIGKILLed or SIGSTOPped: the standby takes over, and only after the stopped leader's own
  `is_leader()` has turned false (its last clock reading + renew deadline is before the standby's winning
  round; CLOCK_MONOTONIC is one clock for every process on the host). A SIGSTOPped leader that is continued
  finds the Lease gone and reports it lost.
- `release()`: with a lease duration far beyond the test's patience, the standby can only lead because the
  Lease was handed over.
Durations are printed, not asserted (no timed assertions); the bound on them is pinned in the unit tests.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from modelship.adapters.leader import LeaderElector
from modelship.controller.settings import Settings

from e2e.harness import wait_for
from e2e.stack import StackContext

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CANDIDATE = Path(__file__).with_name("lease_candidate.py")
FAST = {"lease_duration_seconds": 5.0, "renew_deadline_seconds": 3.0, "retry_period_seconds": 1.0}
"""Short enough for a test; lease - deadline > retry, so a leader stopped mid-round still stops first."""


class CountingApi:
    """A CoordinationV1Api that records the name of every call."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.calls: list[tuple[float, str]] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.api, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((time.monotonic(), name))
            return method(*args, **kwargs)

        return call


@pytest.fixture
def lease_place(stack: StackContext) -> Iterator[tuple[str, str]]:
    namespace = f"lease-{uuid.uuid4().hex[:6]}"
    stack.run_kubectl("create", "namespace", namespace)
    yield "modelship-test", namespace
    stack.run_kubectl("delete", "namespace", namespace, "--wait=false", "--ignore-not-found", check=False)


def settings_for(place: tuple[str, str], **timing: float) -> Settings:
    return Settings(lease_name=place[0], lease_namespace=place[1], **timing)  # type: ignore[arg-type]


def candidate(stack: StackContext, settings: Settings, who: str) -> tuple[LeaderElector, CountingApi]:
    api = CountingApi(client.CoordinationV1Api(stack.api_client()))
    return LeaderElector(settings, api=api, identity=who), api


def test_two_candidates_one_leader_one_request_per_round(stack: StackContext, lease_place: tuple[str, str]) -> None:
    settings = settings_for(lease_place)  # the operator's defaults: 10 s lease, 7 s deadline, 2 s rounds
    (a, a_api), (b, b_api) = candidate(stack, settings, "a"), candidate(stack, settings, "b")
    a.start()
    b.start()
    try:
        leader, standby = wait_for("a leader", lambda: ((a, a_api), (b, b_api)) if a.is_leader() else
                                   ((b, b_api), (a, a_api)) if b.is_leader() else None, timeout=30)
        since = time.monotonic()
        window = 10 * settings.retry_period_seconds
        while time.monotonic() < since + window:
            assert not (a.is_leader() and b.is_leader())
            assert leader[0].is_leader()
            time.sleep(0.05)
        lease = client.CoordinationV1Api(stack.api_client()).read_namespaced_lease(*lease_place)
        assert lease.spec.holder_identity == leader[0].identity
        leader_calls = [name for at, name in leader[1].calls if at >= since]
        standby_calls = [name for at, name in standby[1].calls if at >= since]
        assert leader_calls and set(leader_calls) == {"replace_namespaced_lease"}
        assert standby_calls and set(standby_calls) == {"read_namespaced_lease"}
        print(f"\nLease requests per minute: leader {len(leader_calls) * 60 / window:.1f}, "
              f"standby {len(standby_calls) * 60 / window:.1f} (retry period {settings.retry_period_seconds} s)")
    finally:
        a.release()
        b.release()


class Child:
    """A candidate process; its stdout is read in a thread."""

    def __init__(self, stack: StackContext, settings: Settings) -> None:
        env = {**os.environ, "KUBECONFIG": str(stack.kubeconfig)}
        args = [settings.lease_name, settings.lease_namespace, str(settings.lease_duration_seconds),
                str(settings.renew_deadline_seconds), str(settings.retry_period_seconds)]
        self.proc = subprocess.Popen([sys.executable, str(CANDIDATE), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env)
        self.last_clock = 0.0
        self.events: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, value = line.strip().partition(" ")
            if word == "clock":
                self.last_clock = max(self.last_clock, float(value))
            else:
                self.events.append(word)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=10)


def takeover_after(stack: StackContext, place: tuple[str, str], stop: signal.Signals) -> tuple[Child, float]:
    """Run a leader process and an in-process standby; `stop` the leader; return when the standby leads."""
    settings = settings_for(place, **FAST)
    child = Child(stack, settings)
    wait_for("the child process to lead", lambda: "leader" in child.events, timeout=60)
    standby, _ = candidate(stack, settings, "standby")
    standby.tick()
    assert not standby.is_leader()
    child.proc.send_signal(stop)
    stopped_at = time.monotonic()
    time.sleep(0.2)  # let the reader drain what the child printed before the signal
    while not standby.is_leader():
        time.sleep(settings.retry_period_seconds)
        standby.tick()
        assert time.monotonic() < stopped_at + 60, "the standby never took over"
    won_at = standby.renewed_at
    assert won_at is not None
    child_fenced_at = child.last_clock + settings.renew_deadline_seconds
    assert child_fenced_at < won_at, "the stopped leader could still count itself leader when the standby won"
    print(f"\n{stop.name}: standby leads {won_at - stopped_at:.2f} s after the signal; the stopped leader's "
          f"is_leader() turned false {won_at - child_fenced_at:.2f} s before (lease "
          f"{settings.lease_duration_seconds:g} s, deadline {settings.renew_deadline_seconds:g} s, "
          f"retry {settings.retry_period_seconds:g} s)")
    return child, won_at


def test_sigkilled_leader_is_replaced_after_its_lease_runs_out(
    stack: StackContext, lease_place: tuple[str, str]
) -> None:
    child, _ = takeover_after(stack, lease_place, signal.SIGKILL)
    child.stop()


def test_sigstopped_leader_stops_counting_itself_leader_first_and_learns_it_lost(
    stack: StackContext, lease_place: tuple[str, str]
) -> None:
    child, _ = takeover_after(stack, lease_place, signal.SIGSTOP)
    try:
        child.proc.send_signal(signal.SIGCONT)
        wait_for("the continued leader to report the Lease lost", lambda: "lost" in child.events, timeout=30)
    finally:
        child.stop()


def test_release_hands_the_lease_over_at_once(stack: StackContext, lease_place: tuple[str, str]) -> None:
    """Given a 120 s lease, when the leader releases it, then the standby leads on one of its next rounds:
    without the release it could not lead for two minutes."""
    settings = dataclasses.replace(settings_for(lease_place), lease_duration_seconds=120.0,
                                   renew_deadline_seconds=7.0, retry_period_seconds=1.0)
    (leader, _), (standby, _) = candidate(stack, settings, "leader"), candidate(stack, settings, "standby")
    leader.tick()
    standby.tick()
    assert leader.is_leader() and not standby.is_leader()
    assert leader.release() is True
    released_at = time.monotonic()
    rounds = 0
    while not standby.is_leader():
        rounds += 1
        assert rounds <= 10, "the standby did not take the released Lease"
        time.sleep(settings.retry_period_seconds)
        standby.tick()
    print(f"\nrelease: standby leads {time.monotonic() - released_at:.2f} s after release() ({rounds} round(s))")
    assert not leader.is_leader()
