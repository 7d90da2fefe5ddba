"""kopf handlers: thin. kopf watches; the control loop (controller/loop.py) decides when and what to reconcile.

- ModelDeployments: every watch event goes to `ControlLoop.observe` (newest body kept, object queued).
- Children (Deployments, ReplicaSets, Pods, Services, HTTPRoutes, VirtualServices labelled
  `app.kubernetes.io/managed-by=modelship`, filtered by the API server) are not kopf's: the informer
  (adapters/informer.py) lists them once at start-up into the watch cache, then watches from that version; each
  event that is news wakes the owning ModelDeployment.
- No timers and no change handlers: kopf therefore writes nothing to the objects (no progress annotations, no
  finalizer of its own); `modelship.dev/finalizer` is the control loop's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import kopf

from modelship.controller.settings import Settings
from modelship.controller.wiring import build_operator
from modelship.domain.api import GROUP, PLURAL, VERSION

KOPF_PREFIX = "kopf.modelship.dev"
KOPF_FINALIZER = f"{KOPF_PREFIX}/unused"
"""kopf removes its configured finalizer from objects no handler of its needs it for; naming one we never set
keeps kopf away from ours."""
SHARD_LABEL = "modelship.dev/shard"
log = logging.getLogger("modelship.handlers")


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds a "last handled" essence (a deep copy of the whole body) for every event of every watched
    kind, for change handlers. There are none here: skipping the copy is most of kopf's per-event cost."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return {}

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Nothing is kept."""


def _shard_selector(shard: str) -> str:
    """Server-side: an operator with a shard serves only objects labelled with it; one without serves the rest."""
    return f"{SHARD_LABEL}={shard}" if shard else f"!{SHARD_LABEL}"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Operator-wide settings, watch selectors, the control loop and leader election."""
    settings.persistence.finalizer = KOPF_FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.posting.level = logging.WARNING
    # kopf logs every handled event at INFO ("Handler ... succeeded"): a line per watch event at fleet scale.
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    settings.networking.request_timeout = 30
    operator_settings = Settings.from_env()
    settings.watching.label_selectors[f"{GROUP}/{VERSION}", PLURAL] = _shard_selector(operator_settings.shard)
    operator = build_operator(operator_settings)
    # Before the first reconcile: one paged LIST per child kind, so it sees every child; the watches go on
    # from the version of that listing.
    counts = await operator.informer.prime()
    log.info("watch cache primed: %s", ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "empty")
    memo.operator = operator
    memo.informer_task = asyncio.create_task(operator.informer.run(), name="child-informer")
    memo.loop_task = asyncio.create_task(operator.loop.run(), name="control-loop")
    memo.notify_task = asyncio.create_task(operator.notifier.run(), name="notifications")
    operator.elector.start()
    memo.leader_task = asyncio.create_task(_lead(operator), name="leadership")
    if operator_settings.metrics_port > 0:
        operator.loop.reconciler.telemetry.serve(operator_settings.metrics_port)


async def _lead(operator: Any) -> None:
    """A standby keeps its watches and queue warm; it starts reconciling once it holds the Lease."""
    await operator.elector.wait_until_leader()
    log.info("leading: reconciling")
    operator.loop.queue.resume()


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    """Stop reconciling, then hand the Lease over at once (a rolling update waits for no lease expiry)."""
    for task in (getattr(memo, "leader_task", None), getattr(memo, "loop_task", None),
                 getattr(memo, "informer_task", None), getattr(memo, "notify_task", None)):
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    operator = getattr(memo, "operator", None)
    if operator is not None:
        await asyncio.to_thread(operator.elector.release)
        await operator.transport.close()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_modeldeployment(event: Mapping[str, Any], memo: kopf.Memo, **_: Any) -> None:
    """Every ModelDeployment event: keep the newest body, queue the object."""
    memo.operator.loop.observe(event.get("type"), event["object"])
