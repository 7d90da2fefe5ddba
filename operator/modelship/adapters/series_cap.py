"""Which ModelDeployments get per-object metric series: at most a fixed number, rollouts in flight first.

Per-object series (phase, canary weight, SLO values, per-object counters) cost Prometheus memory per object; at
10,000 objects they dwarf everything else. The cap keeps them for the objects an SRE looks at during an incident,
those mid-rollout, and fills the rest with settled objects. Every call is O(1): no scan over the fleet.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

Key = tuple[str, str]
"""(namespace, name) of a ModelDeployment."""


@dataclass
class Change:
    """Objects that gained a slot (write their series) and objects that lost theirs (remove their series)."""

    shown: list[Key] = field(default_factory=list)
    hidden: list[Key] = field(default_factory=list)


class SeriesCap:
    """At most `limit` objects shown; a mid-rollout object never waits while a settled one holds a slot.

    Invariant after every call: objects waiting for a slot are all mid-rollout, and while any waits, every slot
    is held by a mid-rollout object. A settled object that finds no free slot is not tracked: it takes a free slot
    on its next observation (the operator re-observes every object at each resync). When a settled object must
    make room, the one that settled longest ago goes first.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"metrics_max_objects must be >= 0, got {limit} (MODELSHIP_METRICS_MAX_OBJECTS)")
        self.limit = limit
        self._rolling: set[Key] = set()
        self._settled: OrderedDict[Key, None] = OrderedDict()
        self._waiting: OrderedDict[Key, None] = OrderedDict()

    def __len__(self) -> int:
        """Objects shown now."""
        return len(self._rolling) + len(self._settled)

    def shown(self, key: Key) -> bool:
        return key in self._rolling or key in self._settled

    def waiting(self) -> int:
        """Mid-rollout objects without a slot (non-zero only when mid-rollout objects alone fill the cap)."""
        return len(self._waiting)

    def update(self, key: Key, rolling: bool) -> Change:
        """The object was observed mid-rollout (`rolling`) or settled."""
        change = Change()
        if key in self._rolling and not rolling:
            self._rolling.discard(key)
            self._settled[key] = None
        elif key in self._settled and rolling:
            del self._settled[key]
            self._rolling.add(key)
        elif not self.shown(key):
            if rolling:
                self._waiting[key] = None
            else:
                self._waiting.pop(key, None)
                if len(self) < self.limit:
                    self._settled[key] = None
                    change.shown.append(key)
        self._rebalance(change)
        return change

    def drop(self, key: Key) -> Change:
        """The object is gone: free its slot (a waiting rollout takes it)."""
        change = Change()
        self._waiting.pop(key, None)
        if self.shown(key):
            self._rolling.discard(key)
            self._settled.pop(key, None)
            change.hidden.append(key)
        self._rebalance(change)
        return change

    def clear(self) -> Change:
        """Forget every object (this replica stopped leading: its view of the fleet is no longer current)."""
        change = Change(hidden=[*self._rolling, *self._settled])
        self._rolling.clear()
        self._settled.clear()
        self._waiting.clear()
        return change

    def _rebalance(self, change: Change) -> None:
        """Give waiting rollouts free slots, else the slots of the longest-settled objects (at most one per call
        in practice: each call changes one object)."""
        while self._waiting and (len(self) < self.limit or self._settled):
            if len(self) >= self.limit:
                evicted, _ = self._settled.popitem(last=False)
                change.hidden.append(evicted)
            promoted, _ = self._waiting.popitem(last=False)
            self._rolling.add(promoted)
            change.shown.append(promoted)
