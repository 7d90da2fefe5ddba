"""Leader election over the stock kubernetes client election, driven tick by tick on a fake clock.

The safety property (hypothesis): whatever the order of rounds, clock steps and failed requests, no two
replicas ever count themselves leader at the same moment, because `is_leader()` ends `renew_deadline` after a
renewal was *sent* and a standby waits `lease_duration` from when it *saw* the renewal. Liveness: a standby
takes over within `lease_duration + 2 x retry_period` of the leader's last renewal, and at once on `release()`.
Cost: a leader's renewal is one PUT; a standby's round is one GET.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lease_fakes import FakeClock, FakeLeaseServer
from modelship.adapters.kube import KubeError
from modelship.adapters.leader import LeaderElector, lease_name, lease_namespace, new_identity
from modelship.controller.settings import Settings

SETTINGS = Settings(lease_name="modelship", lease_namespace="default")
DURATION, DEADLINE, RETRY = 10.0, 7.0, 2.0


def elector(server: FakeLeaseServer, clock: FakeClock, who: str, **kwargs: object) -> LeaderElector:
    return LeaderElector(SETTINGS, api=server.api(who), clock=clock, identity=who, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def world() -> tuple[FakeLeaseServer, FakeClock]:
    return FakeLeaseServer(), FakeClock()


# --- election and cost ------------------------------------------------------------------------------


def test_first_candidate_creates_the_lease_and_leads_the_second_waits(world: tuple[FakeLeaseServer, FakeClock]) -> None:
    server, clock = world
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    a.tick()
    b.tick()
    assert (a.is_leader(), b.is_leader()) == (True, False)
    assert server.holder() == "a"


def test_a_renewal_is_one_put_and_a_standby_round_one_get(world: tuple[FakeLeaseServer, FakeClock]) -> None:
    server, clock = world
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    a.tick()
    b.tick()
    server.calls.clear()
    for _ in range(30):
        clock.advance(RETRY)
        a.tick()
        b.tick()
    assert server.verbs("a") == ["update"] * 30
    assert server.verbs("b") == ["get"] * 30
    assert a.is_leader() and not b.is_leader()


def test_a_conflicting_write_falls_back_to_get_and_keeps_the_lease_if_still_ours(
    world: tuple[FakeLeaseServer, FakeClock],
) -> None:
    server, clock = world
    a = elector(server, clock, "a")
    a.tick()
    server.overwrite(holder="a")  # e.g. someone relabelled the Lease: resourceVersion moved, holder did not
    server.calls.clear()
    clock.advance(RETRY)
    a.tick()
    assert server.verbs("a") == ["update", "get", "update"]
    assert a.is_leader()
    server.calls.clear()
    clock.advance(RETRY)
    a.tick()
    assert server.verbs("a") == ["update"], "back to one request per renewal"


def test_a_lease_taken_by_someone_else_is_lost_at_once(world: tuple[FakeLeaseServer, FakeClock]) -> None:
    server, clock = world
    lost: list[str] = []
    a = elector(server, clock, "a", on_lost=lambda: lost.append("a"))
    a.tick()
    server.overwrite(holder="intruder")
    clock.advance(RETRY)
    a.tick()
    assert not a.is_leader()
    assert lost == ["a"]


# --- fencing by time --------------------------------------------------------------------------------


def test_failed_renewals_end_leadership_at_the_renew_deadline_and_call_on_lost_once(
    world: tuple[FakeLeaseServer, FakeClock],
) -> None:
    server, clock = world
    lost: list[str] = []
    a = elector(server, clock, "a", on_lost=lambda: lost.append("a"))
    a.tick()
    renewed = clock.now
    server.down.add("a")
    while clock.now < renewed + DEADLINE - RETRY:
        clock.advance(RETRY)
        a.tick()
        assert a.is_leader() and not lost
    clock.now = renewed + DEADLINE - 0.001
    assert a.is_leader()
    clock.now = renewed + DEADLINE
    assert not a.is_leader(), "is_leader ends at the deadline, before the next round"
    a.tick()
    a.tick()
    assert lost == ["a"]


def test_fence_refuses_writes_unless_leading(world: tuple[FakeLeaseServer, FakeClock]) -> None:
    server, clock = world
    a = elector(server, clock, "a")
    with pytest.raises(KubeError) as refused:
        a.fence()
    assert (refused.value.status, refused.value.reason) == (0, "NotLeader")
    a.tick()
    a.fence()
    clock.advance(DEADLINE)
    with pytest.raises(KubeError):
        a.fence()


def test_a_disabled_elector_always_leads_and_makes_no_requests() -> None:
    off = LeaderElector(dataclasses.replace(SETTINGS, leader_election=False), api=object())
    off.start()
    off.fence()
    assert off.is_leader()
    asyncio.run(off.wait_until_leader())
    assert off.release() is False


# --- liveness ---------------------------------------------------------------------------------------


@given(offset=st.floats(min_value=0.0, max_value=RETRY - 0.01), crash_after=st.integers(min_value=1, max_value=20))
@settings(max_examples=60, deadline=None)
def test_a_standby_takes_over_within_a_lease_duration_and_two_retry_periods(offset: float, crash_after: int) -> None:
    """Given a leader and a standby whose rounds are `offset` apart, when the leader stops (SIGKILL/SIGSTOP)
    after `crash_after` renewals, the standby leads no later than last renewal + duration + 2 x retry."""
    server, clock = FakeLeaseServer(), FakeClock()
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    a.tick()
    for _ in range(crash_after):
        clock.advance(offset)
        b.tick()
        clock.advance(RETRY - offset)
        a.tick()
    last_renewal = clock.now
    clock.advance(offset)
    while not b.is_leader():
        b.tick()
        assert clock.now <= last_renewal + DURATION + 2 * RETRY
        clock.advance(RETRY)
    assert not a.is_leader()


def test_release_hands_over_on_the_standbys_next_round(world: tuple[FakeLeaseServer, FakeClock]) -> None:
    server, clock = world
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    a.tick()
    b.tick()
    clock.advance(RETRY)
    assert a.release() is True
    assert not a.is_leader()
    server.calls.clear()
    a.tick()
    assert server.verbs("a") == [], "a released elector no longer campaigns"
    b.tick()
    assert b.is_leader() and server.holder() == "b"


def test_release_changes_nothing_when_someone_else_wrote_since(world: tuple[FakeLeaseServer, FakeClock]) -> None:
    server, clock = world
    a = elector(server, clock, "a")
    a.tick()
    server.overwrite(holder="b")
    assert a.release() is False
    assert server.holder() == "b"


async def test_wait_until_leader_returns_when_the_lease_is_won(world: tuple[FakeLeaseServer, FakeClock]) -> None:
    server, clock = world
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    a.tick()
    waiting = asyncio.create_task(b.wait_until_leader())
    await asyncio.sleep(0)
    assert not waiting.done()
    a.release()
    b.tick()
    await asyncio.wait_for(waiting, timeout=5)
    assert b.is_leader()


# --- safety under any interleaving ------------------------------------------------------------------

Step = tuple[str, int, float]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(0, 2), st.just(0.0)),
        st.tuples(st.just("advance"), st.just(0), st.sampled_from([RETRY, DEADLINE, DURATION]) | st.integers(0, 48).map(
            lambda quarters: quarters / 4)),
        st.tuples(st.just("partition"), st.integers(0, 2), st.just(0.0)),
        st.tuples(st.just("heal"), st.integers(0, 2), st.just(0.0)),
        st.tuples(st.just("release"), st.integers(0, 2), st.just(0.0)),
    ),
    max_size=80,
)


@given(steps)
@example([("tick", 0, 0.0), ("tick", 1, 0.0), ("advance", 0, DURATION), ("tick", 1, 0.0)])  # a paused leader
@example([("tick", 0, 0.0), ("partition", 0, 0.0), ("advance", 0, DEADLINE - 0.25), ("tick", 1, 0.0),
          ("tick", 0, 0.0), ("advance", 0, DURATION), ("tick", 1, 0.0), ("heal", 0, 0.0), ("tick", 0, 0.0)])
@settings(max_examples=300, deadline=None)
def test_no_two_replicas_ever_lead_at_once(script: list[Step]) -> None:
    """For any sequence of rounds, clock steps (a paused process is one that does not tick while the clock
    moves), failing requests and releases, at every instant at most one replica's is_leader() is true."""
    server, clock = FakeLeaseServer(), FakeClock()
    names = ["a", "b", "c"]
    electors = [elector(server, clock, name) for name in names]
    for action, index, seconds in script:
        if action == "tick":
            electors[index].tick()
        elif action == "advance":
            clock.advance(seconds)
        elif action == "partition":
            server.down.add(names[index])
        elif action == "heal":
            server.down.discard(names[index])
        else:
            electors[index].release()
        leaders = [e.identity for e in electors if e.is_leader()]
        assert len(leaders) <= 1, leaders
        if leaders:
            assert server.holder() == leaders[0], "whoever counts itself leader holds the Lease"


# --- the chart's grant -----------------------------------------------------------------------------

HELPERS = Path(__file__).resolve().parents[2] / "charts" / "modelship" / "templates" / "_helpers.tpl"


def test_the_chart_grants_exactly_the_lease_verbs_the_elector_uses(world: tuple[FakeLeaseServer, FakeClock]) -> None:
    """Every path (create, renew, conflict fallback, take over, release) over the recording API; the chart's
    Lease rule grants exactly those verbs."""
    server, clock = world
    a, b = elector(server, clock, "a"), elector(server, clock, "b")
    a.tick()
    b.tick()
    server.overwrite(holder="a")
    clock.advance(RETRY)
    a.tick()
    a.release()
    b.tick()
    used = {("coordination.k8s.io", "leases", verb) for _, verb in server.calls}
    match = re.search(r'define "modelship\.leaseRules" -\}\}\n(.*?)\{\{- end', HELPERS.read_text(), re.S)
    assert match, f"no modelship.leaseRules in {HELPERS}"
    granted = {(group, resource, verb) for rule in yaml.safe_load(match.group(1))
               for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
    assert granted == used


# --- names and settings -----------------------------------------------------------------------------


WATCHED_HASH = hashlib.sha256(b"ml-a,ml-b").hexdigest()[:8]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "modelship"),
        ({"shard": "gpu-a"}, "modelship-gpu-a"),
        ({"namespaces": ("ml-b", "ml-a")}, f"modelship-{WATCHED_HASH}"),
        ({"shard": "gpu-a", "namespaces": ("ml-a", "ml-b")}, f"modelship-gpu-a-{WATCHED_HASH}"),
        ({"lease_name": "mine", "shard": "x"}, "mine"),
    ],
)
def test_lease_name_is_derived_from_shard_and_watched_namespaces(overrides: dict[str, object], expected: str) -> None:
    assert lease_name(dataclasses.replace(Settings(), **overrides)) == expected  # type: ignore[arg-type]


def test_operators_watching_different_namespaces_use_different_leases() -> None:
    one = lease_name(Settings(namespaces=("e2e-1",)))
    other = lease_name(Settings(namespaces=("e2e-2",)))
    assert one != other and lease_name(Settings(namespaces=("e2e-2", "e2e-2"))) == other


def test_a_shard_that_cannot_name_a_lease_is_refused_naming_the_fix() -> None:
    with pytest.raises(ValueError, match=r"MODELSHIP_SHARD='GPU_A'.*MODELSHIP_LEASE_NAME"):
        lease_name(Settings(shard="GPU_A"))


@pytest.mark.parametrize(
    ("overrides", "environ", "expected"),
    [
        ({"lease_namespace": "ops"}, {"POD_NAMESPACE": "pods"}, "ops"),
        ({}, {"POD_NAMESPACE": "pods"}, "pods"),
        ({"namespaces": ("ml",)}, {}, "ml"),
        ({"namespaces": ("ml", "ml2")}, {}, "default"),
        ({}, {}, "default"),
    ],
)
def test_lease_namespace(overrides: dict[str, object], environ: dict[str, str], expected: str) -> None:
    assert lease_namespace(dataclasses.replace(Settings(), **overrides), environ) == expected  # type: ignore[arg-type]


def test_identity_names_the_pod_and_differs_per_process_start() -> None:
    first, second = new_identity({"POD_NAME": "op-7c9d"}), new_identity({"POD_NAME": "op-7c9d"})
    assert first.startswith("op-7c9d_") and first != second


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lease_duration_seconds": 10.5}, "MODELSHIP_LEASE_DURATION_SECONDS=10.5"),
        ({"renew_deadline_seconds": 10.0}, "MODELSHIP_RENEW_DEADLINE_SECONDS=10.0 must be shorter"),
        ({"retry_period_seconds": 0.5}, "MODELSHIP_RETRY_PERIOD_SECONDS=0.5"),
        ({"retry_period_seconds": 6.0}, "must exceed 1.2 x MODELSHIP_RETRY_PERIOD_SECONDS=6.0"),
    ],
)
def test_bad_timings_are_refused_naming_the_variable(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("(", r"\(")):
        LeaderElector(dataclasses.replace(SETTINGS, **overrides), api=object())  # type: ignore[arg-type]
