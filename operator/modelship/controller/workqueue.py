"""A due-time work queue with de-duplication and bounded workers (the client-go workqueue, in asyncio).

Why: a per-object timer is one task per object waking every tick; at 10,000 objects that is the whole CPU
and a log line per tick. Here every object is at most one entry: `add(key, delay)` keeps the earliest due time,
a burst of watch events for one object is one reconcile, and a key being reconciled is never reconciled
concurrently (an `add` during its reconcile runs it once more afterwards). At most `workers` reconciles run
at once; the rest wait, oldest first, and their waiting time is the backlog age SREs alert on.

Time-based work (step ends, checks, deadlines, scale-downs) is the handler's answer: seconds until the object
is due again, or None for "only on change, and at the jittered resync".
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

log = logging.getLogger("modelship.workqueue")

Handler = Callable[[Hashable], Awaitable[float | None]]

BACKOFF_START_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 60.0


@dataclass
class QueueStats:
    """What telemetry reports: queued-and-due keys, how long the oldest has waited, reconciles running."""

    depth: int
    oldest_age_seconds: float
    in_flight: int
    scheduled: int


@dataclass
class _Key:
    due: float | None = None
    """When it is next due (None: not scheduled)."""
    ready_since: float | None = None
    """When it became due and joined the ready line (None: not in the ready line)."""
    running: bool = False
    again: float | None = None
    """Due time asked for while running: scheduled when the running reconcile ends."""
    failures: int = 0
    forgotten: bool = False
    """Forgotten while it ran: dropped when that reconcile ends, unless added again meanwhile."""


@dataclass
class WorkQueue:
    """Keys to reconcile; `run()` serves them until cancelled."""

    handler: Handler
    workers: int = 16
    resync_seconds: float = 600.0
    jitter: float = 0.1
    backoff_start: float = BACKOFF_START_SECONDS
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    _keys: dict[Hashable, _Key] = field(default_factory=dict)
    _heap: list[tuple[float, int, Hashable]] = field(default_factory=list)
    _ready: deque[Hashable] = field(default_factory=deque)
    _seq: int = 0
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _has_ready: asyncio.Condition | None = None
    _running: int = 0
    paused: bool = False
    """A standby keeps its queue filled from the watches but reconciles nothing until it leads."""

    def add(self, key: Hashable, delay: float = 0.0) -> None:
        """Reconcile `key` in `delay` seconds, or sooner if it is already due sooner."""
        due = self.clock() + max(0.0, delay)
        entry = self._keys.setdefault(key, _Key())
        if entry.running:
            entry.forgotten = False
            entry.again = due if entry.again is None else min(entry.again, due)
            return
        if entry.ready_since is not None:
            return  # already waiting for a worker
        if entry.due is not None and entry.due <= due:
            return
        entry.due = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        self._wake.set()

    def forget(self, key: Hashable) -> None:
        """The object is gone: drop its schedule (a running reconcile finishes; it is not re-added)."""
        entry = self._keys.get(key)
        if entry is None:
            return
        if entry.running:
            entry.again = None
            entry.due = None
            entry.forgotten = True
            return
        self._keys.pop(key, None)  # heap and ready entries are skipped lazily

    def stats(self) -> QueueStats:
        now = self.clock()
        oldest = 0.0
        while self._ready:
            head = self._keys.get(self._ready[0])
            if head is None or head.ready_since is None:
                self._ready.popleft()  # forgotten
                continue
            oldest = max(0.0, now - head.ready_since)
            break
        return QueueStats(len(self._ready), oldest, self._running, len(self._keys))

    def _promote_due(self) -> float | None:
        """Move due keys to the ready line; seconds until the next one is due (None: nothing scheduled)."""
        now = self.clock()
        while self._heap:
            due, _, key = self._heap[0]
            entry = self._keys.get(key)
            if entry is None or entry.due != due or entry.running:
                heapq.heappop(self._heap)  # superseded
                continue
            if due > now:
                return due - now
            heapq.heappop(self._heap)
            entry.due = None
            entry.ready_since = due
            self._ready.append(key)
        return None

    async def run(self) -> None:
        """Serve the queue with `workers` tasks until cancelled."""
        self._has_ready = asyncio.Condition()
        tasks = [asyncio.create_task(self._worker(), name=f"reconcile-worker-{n}") for n in range(self.workers)]
        try:
            await self._schedule()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _schedule(self) -> None:
        assert self._has_ready is not None
        while True:
            self._wake.clear()
            if not self.paused:
                wait = self._promote_due()
                if self._ready:
                    async with self._has_ready:
                        self._has_ready.notify(len(self._ready))
            else:
                wait = None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait if wait is not None else 5.0)

    def resume(self) -> None:
        """Start reconciling (this replica now leads)."""
        self.paused = False
        self._wake.set()

    async def _next(self) -> Hashable:
        assert self._has_ready is not None
        async with self._has_ready:
            while True:
                while self._ready:
                    key = self._ready.popleft()
                    entry = self._keys.get(key)
                    if entry is not None and entry.ready_since is not None and not entry.running:
                        entry.ready_since = None
                        entry.running = True
                        return key
                await self._has_ready.wait()

    async def _worker(self) -> None:
        while True:
            key = await self._next()
            self._running += 1
            started = self.clock()
            delay: float | None
            try:
                delay = await self.handler(key)
                failed = False
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile of %s failed; retrying with backoff", key)
                delay, failed = None, True
            finally:
                self._running -= 1
            self._finish(key, delay, failed, started)

    def _finish(self, key: Hashable, delay: float | None, failed: bool, started: float) -> None:
        """Schedule the next run. A due time the handler answered counts from when it started (its decision
        was made then): a reconcile that took 2 s must not make the next step end 2 s late."""
        entry = self._keys.get(key)
        if entry is None:
            return
        entry.running = False
        if entry.forgotten:
            self._keys.pop(key, None)
            return
        again = entry.again
        entry.again = None
        if failed:
            entry.failures += 1
            delay = min(BACKOFF_MAX_SECONDS, self.backoff_start * 2 ** (entry.failures - 1))
        else:
            entry.failures = 0
            if delay is None:
                delay = self.resync_seconds * (1 + self.rng.uniform(-self.jitter, self.jitter))
            else:
                delay -= self.clock() - started
        self.add(key, delay)
        if again is not None:
            self.add(key, max(0.0, again - self.clock()))
