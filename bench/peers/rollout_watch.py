"""What a watch on Argo Rollouts shows, timestamped on arrival: health, step advances and pause lateness.

Why a watch (not polling): step lateness is "pause due -> the API shows the next step"; a poll would add up to
its own period to every figure. `RolloutBook` is the pure bookkeeping (unit-tested); `book_watcher` feeds it from
a kubernetes watch in a thread (bench.watching.ObjectWatcher) and re-lists when the watch expires.

Argo Rollouts' status fields used: `observedGeneration` (a string), `phase`, `currentStepIndex`,
`stableRS` / `currentPodHash` (equal once the new revision is stable) and `pauseConditions[].startTime` (reason
`CanaryPauseStep`). The pause is due at startTime + the step's duration; startTime has one-second resolution,
and it is the same truncated time Argo itself adds the duration to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.watching import ObjectWatcher, WatchBook, parse_time

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"
PAUSE_REASON = "CanaryPauseStep"


@dataclass
class RolloutState:
    """The latest status of one Rollout, as far as the bench cares."""

    generation: int = 0
    observed: str = ""
    phase: str = ""
    step_index: int | None = None
    stable_rs: str = ""
    pod_hash: str = ""
    message: str = ""

    @property
    def healthy(self) -> bool:
        """Observed at its generation, Healthy, and the current template is the stable one."""
        return (self.observed == str(self.generation) and self.phase == "Healthy"
                and bool(self.pod_hash) and self.stable_rs == self.pod_hash)


class RolloutBook(WatchBook[RolloutState]):
    """Rollouts from watch events; while recording, step advances (each step passed is a transition) and
    the pauses' start and advance times."""

    def __init__(self, pause_steps: frozenset[int], pause_seconds: float) -> None:
        super().__init__(RolloutState, pause_seconds)
        self.pause_steps = pause_steps

    def update(self, name: str, state: RolloutState, metadata: dict[str, Any], status: dict[str, Any],
               arrival: float) -> None:
        previous = state.step_index
        state.generation = int(metadata.get("generation") or 0)
        state.observed = str(status.get("observedGeneration") or "")
        state.phase = str(status.get("phase") or "")
        index = status.get("currentStepIndex")
        state.step_index = int(index) if index is not None else None
        state.stable_rs = str(status.get("stableRS") or "")
        state.pod_hash = str(status.get("currentPodHash") or "")
        state.message = str(status.get("message") or "")
        if not self.recording or state.step_index is None:
            return
        if previous is not None and state.step_index > previous:
            self.transitions += state.step_index - previous
            for step in self.pause_steps:
                if previous <= step < state.step_index:
                    self.advanced_at.setdefault((name, step), arrival)
        if state.step_index in self.pause_steps:
            for condition in status.get("pauseConditions") or []:
                if condition.get("reason") == PAUSE_REASON and condition.get("startTime"):
                    self.started.setdefault((name, state.step_index), parse_time(condition["startTime"]))

    def healthy_count(self) -> int:
        with self.lock:
            return sum(1 for state in self.states.values() if state.healthy)

    def refused(self) -> dict[str, str]:
        """Rollouts Argo refuses (phase Degraded, `InvalidSpec: ...`): they will never become Healthy."""
        with self.lock:
            return {name: state.message for name, state in self.states.items()
                    if state.phase == "Degraded" and state.message.startswith("InvalidSpec")}


def book_watcher(api_client: Any, namespace: str, book: RolloutBook) -> ObjectWatcher:
    """A (not yet started) watch on one namespace's Rollouts feeding `book`."""
    return ObjectWatcher(api_client, namespace, book.observe, (GROUP, VERSION, PLURAL))
