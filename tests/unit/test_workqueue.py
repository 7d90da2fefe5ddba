"""The work queue: one entry per object, never two reconciles of one object at once, at most `workers` in flight,
earliest due time wins, failures back off, a paused (standby) queue reconciles nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Hashable

from hypothesis import given, settings
from hypothesis import strategies as st
from modelship.controller.workqueue import WorkQueue


class Recorder:
    """A handler that counts calls, tracks concurrency per key and overall, and can be held open."""

    def __init__(self, hold: float = 0.0, fail: int = 0) -> None:
        self.calls: Counter[Hashable] = Counter()
        self.running: set[Hashable] = set()
        self.overlaps = 0
        self.max_in_flight = 0
        self.hold = hold
        self.fail = fail

    async def __call__(self, key: Hashable) -> float | None:
        if key in self.running:
            self.overlaps += 1
        self.running.add(key)
        self.max_in_flight = max(self.max_in_flight, len(self.running))
        self.calls[key] += 1
        try:
            await asyncio.sleep(self.hold)
            if self.fail > 0:
                self.fail -= 1
                raise RuntimeError("API server unavailable")
        finally:
            self.running.discard(key)
        return None


async def serve(queue: WorkQueue, until: float = 0.3) -> None:
    task = asyncio.create_task(queue.run())
    await asyncio.sleep(until)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_burst_of_events_for_one_object_is_one_reconcile() -> None:
    handler = Recorder()
    queue = WorkQueue(handler, workers=4)
    for _ in range(100):
        queue.add(("ml", "fraud"))
    await serve(queue)
    assert handler.calls[("ml", "fraud")] == 1


async def test_an_event_during_a_reconcile_runs_it_once_more_afterwards_never_concurrently() -> None:
    handler = Recorder(hold=0.05)
    queue = WorkQueue(handler, workers=4)
    queue.add("a")
    task = asyncio.create_task(queue.run())
    await asyncio.sleep(0.02)  # "a" is being reconciled
    queue.add("a")
    queue.add("a")
    await asyncio.sleep(0.3)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert handler.calls["a"] == 2 and handler.overlaps == 0


async def test_at_most_workers_reconciles_run_at_once_and_all_are_served() -> None:
    handler = Recorder(hold=0.01)
    queue = WorkQueue(handler, workers=3)
    for n in range(30):
        queue.add(n)
    await serve(queue, until=0.5)
    assert handler.max_in_flight <= 3
    assert set(handler.calls) == set(range(30))


async def test_the_earliest_due_time_wins() -> None:
    handler = Recorder()
    queue = WorkQueue(handler, workers=1)
    queue.add("step-end", delay=3600)
    queue.add("step-end", delay=0)
    queue.add("later", delay=3600)
    await serve(queue)
    assert handler.calls == Counter({"step-end": 1})


async def test_a_failed_reconcile_is_retried_with_backoff() -> None:
    handler = Recorder(fail=2)
    queue = WorkQueue(handler, workers=1, backoff_start=0.01)
    queue.add("flaky")
    await serve(queue, until=0.4)
    assert handler.calls["flaky"] == 3  # two failures (0.01 s, 0.02 s backoff), then success: resync is far


async def test_a_paused_standby_reconciles_nothing_until_it_leads() -> None:
    handler = Recorder()
    queue = WorkQueue(handler, workers=2, paused=True)
    queue.add("a")
    queue.add("b")
    task = asyncio.create_task(queue.run())
    await asyncio.sleep(0.1)
    assert not handler.calls
    queue.resume()
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert handler.calls == Counter({"a": 1, "b": 1})


async def test_a_forgotten_object_is_not_reconciled() -> None:
    handler = Recorder()
    queue = WorkQueue(handler, workers=1)
    queue.add("deleted")
    queue.add("kept")
    queue.forget("deleted")
    await serve(queue)
    assert handler.calls == Counter({"kept": 1})


def test_backlog_age_is_the_wait_of_the_oldest_due_key() -> None:
    now = [100.0]
    queue = WorkQueue(Recorder(), workers=1, clock=lambda: now[0])
    queue.add("first")
    now[0] = 101.0
    queue.add("second")
    now[0] = 105.0
    assert queue._promote_due() is None
    stats = queue.stats()
    assert stats.depth == 2 and stats.oldest_age_seconds == 5.0 and stats.in_flight == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcde"), st.sampled_from(["add", "forget"]), st.integers(0, 3)),
                min_size=1, max_size=40))
def test_any_sequence_of_events_never_overlaps_a_key_and_serves_every_key_last_added(
    ops: list[tuple[str, str, int]],
) -> None:
    """Whatever the interleaving of adds, forgets and worker progress: no key is reconciled twice at once, and
    every key whose last operation was an add is reconciled after that add."""

    async def scenario() -> tuple[Recorder, dict[str, int], Counter[Hashable]]:
        handler = Recorder(hold=0.001)
        queue = WorkQueue(handler, workers=3)
        task = asyncio.create_task(queue.run())
        last: dict[str, str] = {}
        calls_at_last_add: dict[str, int] = {}
        for key, op, pause in ops:
            if op == "add":
                queue.add(key)
                calls_at_last_add[key] = handler.calls[key]
            else:
                queue.forget(key)
            last[key] = op
            for _ in range(pause):
                await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        wanted = {k: calls_at_last_add[k] for k, op in last.items() if op == "add"}
        return handler, wanted, handler.calls

    handler, wanted, calls = asyncio.run(scenario())
    assert handler.overlaps == 0
    for key, before in wanted.items():
        assert calls[key] > before, f"{key} was added last and never reconciled after"


async def test_a_due_time_counts_from_when_the_reconcile_started_not_from_when_it_ended() -> None:
    """A step ending 10 s after the decision: a reconcile that took 4 s schedules the next one 6 s after its end."""
    now = [0.0]

    async def slow(key: Hashable) -> float | None:
        now[0] += 4.0  # writes under load
        return 10.0

    queue = WorkQueue(slow, workers=1, clock=lambda: now[0])
    queue.add("step")
    task = asyncio.create_task(queue.run())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert queue._keys["step"].due == 10.0
