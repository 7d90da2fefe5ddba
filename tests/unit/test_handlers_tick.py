"""The timer handler reconciles early for a pending manual request (kopf's diff never reports it)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelship import handlers
from modelship.controller.requests import parse_request


@dataclass
class Result:
    status_patch: dict[str, Any] = field(default_factory=dict)


class Reconciler:
    def __init__(self) -> None:
        self.calls = 0

    async def reconcile(self, body: Any) -> Result:
        self.calls += 1
        return Result()


class Memo:
    def __init__(self) -> None:
        self.reconciler = Reconciler()


class Patch:
    def __init__(self) -> None:
        self.status: dict[str, Any] = {}


def tick(annotations: dict[str, str], last_request_id: str | None) -> int:
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    body = {
        "metadata": {"annotations": annotations},
        "status": {"nextReconcileAt": later, "lastRequestId": last_request_id},
    }
    memo = Memo()
    on_tick: Any = handlers.on_tick  # kopf's decorator types expect every kwarg kopf passes
    asyncio.run(on_tick(body=body, patch=Patch(), memo=memo))
    return memo.reconciler.calls


def test_tick_waits_for_next_reconcile_without_a_request() -> None:
    assert tick({}, None) == 0


def test_tick_reconciles_now_for_a_pending_request_only() -> None:
    request = json.dumps({"id": "r1", "action": "pause", "by": "alice"})
    assert tick({"modelship.dev/request": request}, None) == 1
    assert tick({"modelship.dev/request": request}, "r1") == 0
    # an unreadable request is reconciled once, so the operator records why it ignored it, then never again
    unreadable = parse_request({"modelship.dev/request": "not json"})
    assert unreadable is not None and unreadable.problem is not None
    assert tick({"modelship.dev/request": "not json"}, None) == 1
    assert tick({"modelship.dev/request": "not json"}, unreadable.id) == 0
