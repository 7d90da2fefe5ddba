"""What a watch on ModelDeployments shows, timestamped on arrival: health, stage/step transitions, step lateness.

Why a watch (not polling): step lateness is "step due -> the API shows the next step"; a poll would add up to
its own period to every figure. `FleetBook` is the pure bookkeeping (unit-tested); `book_watcher` feeds it from a
kubernetes watch in a thread (bench.watching.ObjectWatcher) and re-lists when the watch expires.

Status fields used (operator/modelship/domain/status.py): `observedGeneration`, `phase`, `stage`, `step`,
`stepStartedAt` (when the current step started; a step is due at stepStartedAt + its duration) and
`stableRevision.version`. A transition is any change of (stage, step) while recording: Stable -> Validating
(the rollout starts), Validating -> Canary step 0, step 0 -> step 1, step 1 -> Promoting, Promoting -> Stable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.watching import ObjectWatcher, WatchBook, parse_time

GROUP, VERSION, PLURAL = "modelship.dev", "v1alpha1", "modeldeployments"
STAGE_ORDER = {"Validating": 1, "Shadow": 2, "Canary": 3, "Promoting": 4, "Stable": 5}
CANARY = STAGE_ORDER["Canary"]


@dataclass
class DeploymentState:
    """The latest status of one ModelDeployment, as far as the bench cares."""

    generation: int = 0
    observed: int = 0
    phase: str = ""
    stage: str = ""
    step: int | None = None
    stable_version: str = ""

    @property
    def position(self) -> tuple[int, int]:
        """Where the rollout is, ordered: (stage rank, step); no stage reads as Stable."""
        return STAGE_ORDER.get(self.stage, STAGE_ORDER["Stable"]), self.step or 0

    def healthy(self, version: str | None = None) -> bool:
        """Observed at its generation, Healthy, and (if given) serving `version` as stable."""
        return (self.observed == self.generation > 0 and self.phase == "Healthy"
                and (version is None or self.stable_version == version))


class FleetBook(WatchBook[DeploymentState]):
    """ModelDeployments from watch events; a transition is any change of (stage, step) while recording."""

    def __init__(self, step_seconds: float) -> None:
        super().__init__(DeploymentState, step_seconds)

    def update(self, name: str, state: DeploymentState, metadata: dict[str, Any], status: dict[str, Any],
               arrival: float) -> None:
        before = (state.stage, state.step)
        state.generation = int(metadata.get("generation") or 0)
        state.observed = int(status.get("observedGeneration") or 0)
        state.phase = str(status.get("phase") or "")
        state.stage = str(status.get("stage") or "")
        state.step = status.get("step")
        state.stable_version = str((status.get("stableRevision") or {}).get("version") or "")
        if not self.recording:
            return
        if before not in ((state.stage, state.step), ("", None)):
            self.transitions += 1
        rank, step = state.position
        if rank == CANARY and status.get("stepStartedAt"):
            self.started.setdefault((name, step), parse_time(str(status["stepStartedAt"])))
        for (other, index) in list(self.started):
            if other == name and (rank, step) > (CANARY, index):
                self.advanced_at.setdefault((name, index), arrival)
                decided = status.get("stepStartedAt") if rank == CANARY else status.get("stageStartedAt")
                if decided and (name, index) not in self.decided_at:
                    self.decided_at[(name, index)] = parse_time(str(decided))

    def count(self, predicate: Callable[[DeploymentState], bool], names: set[str] | None = None) -> int:
        with self.lock:
            return sum(1 for name, state in self.states.items()
                       if (names is None or name in names) and predicate(state))


def book_watcher(api_client: Any, namespace: str, book: FleetBook) -> ObjectWatcher:
    """A (not yet started) watch on one namespace's ModelDeployments feeding `book`."""
    return ObjectWatcher(api_client, namespace, book.observe, (GROUP, VERSION, PLURAL))
