"""Notification outcomes as metrics and Events, and the operator's notification sender built from settings."""

from __future__ import annotations

import logging

from modelship.adapters.kube import Kube, KubeError
from modelship.adapters.notify import NotificationSender
from modelship.adapters.telemetry import Telemetry
from modelship.controller.ports import Cluster, Owner
from modelship.domain.actions import EventType
from modelship.domain.notifications import Notification, Subscriber
from modelship.domain.notify_spec import Subscription

log = logging.getLogger("modelship.notify")


class EventOutcomes:
    """Counts every outcome; tells the ModelDeployment with an Event (an Event that fails is only logged)."""

    def __init__(self, cluster: Cluster, telemetry: Telemetry) -> None:
        self.cluster = cluster
        self.telemetry = telemetry

    def count(self, notification: Notification, outcome: str) -> None:
        target = "webhook" if notification.subscriber.subscription.webhook is not None else "apprise"
        self.telemetry.count_notification(notification.event, target, outcome)

    async def tell(self, notification: Notification, warning: bool, reason: str, message: str) -> None:
        about = notification.payload["modelDeployment"]
        owner = Owner(namespace=about["namespace"], name=about["name"], uid=about["uid"])
        try:
            await self.cluster.emit_event(owner, EventType.WARNING if warning else EventType.NORMAL, reason,
                                          message[:1000])
        except KubeError as exc:
            log.warning("event %s on %s/%s not recorded: %s", reason, owner.namespace, owner.name, exc)


def operator_subscribers(subscriptions: tuple[Subscription, ...], namespace: str) -> tuple[Subscriber, ...]:
    """The chart's subscriptions: every object's decisions, Secrets in the operator's namespace."""
    return tuple(Subscriber(s, namespace, level="operator") for s in subscriptions)


def build_sender(kube: Kube, cluster: Cluster, telemetry: Telemetry) -> NotificationSender:
    return NotificationSender(kube, EventOutcomes(cluster, telemetry))
