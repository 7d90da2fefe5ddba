"""kopf handlers: thin. They hand the object to the Reconciler and copy its status patch into kopf's patch.

Reconciling happens on every spec/annotation change (create, update, resume after restart) and on a timer
whose work is skipped until `status.nextReconcileAt`, so idle objects cost no API calls and due checks are
picked up within one tick.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from typing import Any

import kopf

from modelship.controller.requests import parse_request
from modelship.controller.settings import Settings
from modelship.controller.wiring import build_reconciler
from modelship.domain.api import GROUP, PLURAL, VERSION
from modelship.handlers.diffbase import DigestDiffBaseStorage

KOPF_PREFIX = "kopf.modelship.dev"
TICK_SECONDS = float(os.environ.get("MODELSHIP_TICK_SECONDS", "2"))
log = logging.getLogger("modelship.handlers")


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """Operator-wide settings: our own annotation prefix and finalizer, bounded watches, adapters."""
    settings.persistence.finalizer = "modelship.dev/finalizer"
    # kopf ignores annotations under its own storage prefix when diffing; keeping its bookkeeping under
    # kopf.modelship.dev lets a `modelship.dev/request` annotation (kubectl modelship) trigger on.update.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)
    # A digest, not kopf's copy of the spec: a copy of a large spec overflowed the 256 KiB annotation budget.
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(prefix=KOPF_PREFIX, key="last-handled-configuration")
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 30
    operator_settings = Settings.from_env()
    memo.reconciler = build_reconciler(operator_settings)
    if operator_settings.metrics_port > 0:
        memo.reconciler.telemetry.serve(operator_settings.metrics_port)


async def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo) -> None:
    result = await memo.reconciler.reconcile(body)
    for key, value in result.status_patch.items():
        patch.status[key] = value


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def on_change(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Spec or annotation (manual request) changed, or the operator restarted: reconcile now."""
    await _reconcile(body, patch, memo)


# kopf puts its finalizer (modelship.dev/finalizer) on every object because of this timer. Keep it: it is what
# stops the timer when the object is deleted. Without it kopf keeps ticking on the last body it saw after the
# object is gone, and those ticks re-apply the deleted object's children (tried and measured in e2e scenario 14).
# The price: delete ModelDeployments while an operator watches them (or remove the finalizer by hand).
@kopf.timer(GROUP, VERSION, PLURAL, interval=TICK_SECONDS, sharp=False)
async def on_tick(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Reconcile when status says something is due (step end, next SLO check, deadline, scale-down), or when
    a manual request is still unhandled (on.update normally handles it at once; this is the safety net when
    that handler is retrying after an error)."""
    status = body.get("status") or {}
    request = parse_request(body.get("metadata", {}).get("annotations"))
    pending = request is not None and request.id != status.get("lastRequestId")
    due = status.get("nextReconcileAt")
    if not pending and due and datetime.fromisoformat(str(due).replace("Z", "+00:00")) > datetime.now(UTC):
        return
    await _reconcile(body, patch, memo)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def on_delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Routes go first, before kopf releases its finalizer; the rest goes with owner references (garbage
    collection), so no route ever names a Service that is already gone."""
    await memo.reconciler.delete(body)
