"""Which notifications a decision sends, and what they say: pure, from the decision's Events and new status.

A notification is built only from a decision whose status was written (the control loop publishes after the
write), so a decision lost to a conflict or to a new leader is announced by nobody. Its `id` is the same for the
same decision, subscription and event, so a retried delivery (or a second offer of it) is recognised by the
sender and by receivers (`X-Modelship-Delivery`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelship.domain.actions import EmitEvent, EventType
from modelship.domain.notify_spec import NotificationEvent, Subscription
from modelship.domain.status import ModelDeploymentStatus

NOTIFIABLE = frozenset(str(event) for event in NotificationEvent)
API_VERSION = "modelship.dev/v1alpha1"


@dataclass(frozen=True)
class Subscriber:
    """A subscription and where its Secrets live: the object's namespace, or the operator's for the
    operator-level subscriptions."""

    subscription: Subscription
    secret_namespace: str
    level: str = "object"  # or "operator"


@dataclass(frozen=True)
class Notification:
    """One delivery to do: `payload` is the JSON body (webhooks) and the source of the chat text (Apprise)."""

    id: str
    event: str
    subscriber: Subscriber
    payload: dict[str, Any]

    @property
    def title(self) -> str:
        target = self.payload["modelDeployment"]
        return f"{self.event}: {target['namespace']}/{target['name']}"

    @property
    def text(self) -> str:
        """The chat message: what happened, the evidence, and where to look."""
        lines = [self.payload["message"]]
        evidence = self.payload.get("evidence") or {}
        for metric in evidence.get("metrics", []):  # each says its value against its bound
            lines.append(f"- {metric['name']} {metric['verdict']}: {metric.get('message', '')}")
        target = self.payload["modelDeployment"]
        lines.append(f"kubectl modelship status -n {target['namespace']} {target['name']}")
        return "\n".join(lines)


def delivery_id(uid: str, subscription: str, event: EmitEvent, now: datetime) -> str:
    material = f"{uid}\n{subscription}\n{event.reason}\n{now.isoformat()}\n{event.message}"
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def payload(
    namespace: str, name: str, uid: str, event: EmitEvent, status: ModelDeploymentStatus, now: datetime
) -> dict[str, Any]:
    """The JSON a webhook receives: the decision, where the rollout stands, and the evidence behind it."""
    last = status.history[-1] if status.history else None
    evidence = status.last_analysis
    return {
        "apiVersion": API_VERSION,
        "kind": "Notification",
        "event": event.reason,
        "severity": "warning" if event.type == EventType.WARNING else "info",
        "time": now.isoformat(),
        "message": event.message,
        "modelDeployment": {"namespace": namespace, "name": name, "uid": uid},
        "phase": str(status.phase),
        "stage": str(status.stage) if status.stage is not None else None,
        "step": status.step,
        "weights": {"canary": status.canary_weight, "mirror": status.mirror_percent},
        "stable": status.stable_revision.model_dump(mode="json") if status.stable_revision else None,
        "canary": status.canary_revision.model_dump(mode="json") if status.canary_revision else None,
        "evidence": evidence.model_dump(mode="json", by_alias=True, exclude_none=True) if evidence else None,
        "history": last.model_dump(mode="json", by_alias=True, exclude_none=True) if last else None,
    }


def notifications_for(
    namespace: str, name: str, uid: str, subscribers: Sequence[Subscriber], events: Iterable[EmitEvent],
    status: ModelDeploymentStatus, now: datetime,
) -> tuple[Notification, ...]:
    """One notification per (notifiable Event, subscriber that asked for it), ids stable per decision."""
    out: list[Notification] = []
    for event in events:
        if event.reason not in NOTIFIABLE:
            continue
        body = payload(namespace, name, uid, event, status, now)
        for subscriber in subscribers:
            if event.reason in subscriber.subscription.events:
                key = f"{subscriber.level}/{subscriber.subscription.name}"
                identity = delivery_id(uid, key, event, now)
                out.append(Notification(identity, event.reason, subscriber, {**body, "id": identity}))
    return tuple(out)
