"""Which decisions notify whom, with what evidence; spec and operator-level subscriptions are checked."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from modelship.adapters.telemetry import Telemetry
from modelship.controller.clock import ManualClock
from modelship.controller.notifying import operator_subscribers
from modelship.controller.reconciler import Reconciler
from modelship.controller.settings import Settings
from modelship.domain.actions import EmitEvent, EventType
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.notifications import NOTIFIABLE, Notification, Subscriber, notifications_for
from modelship.domain.notify_spec import NotificationEvent, Subscription
from modelship.domain.observations import MetricsSnapshot, MetricValue
from modelship.domain.status import ModelDeploymentStatus
from modelship.domain.validation import semantic_problems

from tests.unit.test_reconciler import SPEC, V2, FailingMetrics, FakeCluster, FakeRouters, PassingChecks, body

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
WEBHOOK = {"name": "ml-team", "webhook": {"url": {"key": "url"}, "signingKey": {"key": "hmac"}}}
CHAT = {"name": "oncall", "events": ["RolledBack"], "apprise": {"url": {"name": "chat", "key": "slack"}}}


class Collected:
    """A Notifier that keeps what it was offered."""

    def __init__(self) -> None:
        self.offered: list[Notification] = []

    def offer(self, notification: Notification) -> None:
        self.offered.append(notification)


def subscriber(raw: dict[str, Any], namespace: str = "ml") -> Subscriber:
    return Subscriber(Subscription.model_validate(raw), namespace)


def rolled_back_status() -> ModelDeploymentStatus:
    return ModelDeploymentStatus.model_validate({
        "phase": "RolledBack", "stage": "Stable", "canaryWeight": 0,
        "stableRevision": {"version": "1", "hash": "aaaa"},
        "lastAnalysis": {"time": NOW.isoformat(), "verdict": "Fail", "requests": 1000, "metrics": [
            {"name": "errorRate", "value": 0.9, "max": 0.01, "verdict": "Fail", "message": "0.9 > max 0.01"}]},
        "history": [{"revision": "bbbb", "version": "2", "event": "RolledBack", "stage": "Canary",
                     "outcome": "RolledBack", "reason": "errorRate 0.9 > max 0.01", "by": "modelship-operator",
                     "time": NOW.isoformat()}],
    })  # fmt: skip


def test_a_rollback_notifies_every_subscriber_that_asked_with_its_evidence() -> None:
    """Given a webhook on every event and a chat subscription on RolledBack only, when a decision rolls back and
    advances nothing else, then both get the rollback, with the failed SLO against its bound, and nobody hears
    of Events that are not notifications (StepAdvanced)."""
    events = [EmitEvent(EventType.WARNING, "RolledBack", "rolled back version 2: errorRate 0.9 > max 0.01"),
              EmitEvent(EventType.NORMAL, "StepAdvanced", "step 2/3")]
    sent = notifications_for("ml", "fraud", "u-1", [subscriber(WEBHOOK), subscriber(CHAT)], events,
                             rolled_back_status(), NOW)
    assert [(n.event, n.subscriber.subscription.name) for n in sent] == [("RolledBack", "ml-team"),
                                                                          ("RolledBack", "oncall")]
    payload = sent[0].payload
    assert payload["severity"] == "warning" and payload["phase"] == "RolledBack"
    assert payload["modelDeployment"] == {"namespace": "ml", "name": "fraud", "uid": "u-1"}
    assert payload["evidence"]["metrics"][0] == {"name": "errorRate", "value": 0.9, "max": 0.01, "verdict": "Fail",
                                                 "enforced": True, "message": "0.9 > max 0.01"}
    assert payload["history"]["by"] == "modelship-operator" and payload["id"] == sent[0].id
    assert "errorRate Fail: 0.9 > max 0.01" in sent[1].text
    assert "kubectl modelship status -n ml fraud" in sent[1].text


def test_ids_are_stable_per_decision_and_distinct_per_subscription_and_decision() -> None:
    events = [EmitEvent(EventType.WARNING, "RolledBack", "rolled back")]
    subscribers = [subscriber(WEBHOOK), subscriber({**WEBHOOK, "name": "other"})]
    first = notifications_for("ml", "fraud", "u-1", subscribers, events, rolled_back_status(), NOW)
    again = notifications_for("ml", "fraud", "u-1", subscribers, events, rolled_back_status(), NOW)
    later = notifications_for("ml", "fraud", "u-1", subscribers, events, rolled_back_status(),
                              NOW.replace(minute=5))
    assert [n.id for n in first] == [n.id for n in again]
    assert len({n.id for n in first} | {n.id for n in later}) == 4


def test_every_notification_event_is_an_event_reason_the_engine_emits() -> None:
    """The enum is the list of reasons notified: each must be a reason some decision records."""
    import pathlib  # noqa: PLC0415

    domain = pathlib.Path(__file__).parents[2] / "operator" / "modelship" / "domain"
    source = "".join(path.read_text() for path in domain.glob("*.py") if path.name != "notify_spec.py")
    missing = [event for event in NOTIFIABLE if f'"{event}"' not in source and event != "Undone"]
    assert not missing, missing
    assert "Undone" in {str(e) for e in NotificationEvent}  # recorded as the outcome name of an undo


@pytest.mark.parametrize(
    "subscriptions, path, fix",
    [
        ([{"name": "a"}], "spec.notifications[0]", "exactly one of webhook or apprise"),
        ([{"name": "a", **{k: v for k, v in WEBHOOK.items() if k != "name"}, "apprise": CHAT["apprise"]}],
         "spec.notifications[0]", "exactly one"),
        ([WEBHOOK, WEBHOOK], "spec.notifications[1].name", "listed twice"),
    ],
    ids=["no-target", "two-targets", "duplicate-name"],
)
def test_bad_subscriptions_name_the_field_and_the_fix(subscriptions: list[Any], path: str, fix: str) -> None:
    spec = ModelDeploymentSpec.model_validate({**SPEC, "notifications": subscriptions})
    found = semantic_problems(spec)
    assert any(p.path == path and fix in p.message for p in found), found


def test_operator_level_subscriptions_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELSHIP_NOTIFICATIONS", '[{"name": "platform", "events": ["RolledBack"], '
                       '"webhook": {"url": {"key": "url"}}}]')
    monkeypatch.setenv("POD_NAMESPACE", "modelship-system")
    settings = Settings.from_env()
    (only,) = operator_subscribers(settings.notifications, settings.notifications_namespace)
    assert (only.subscription.name, only.secret_namespace, only.level) == ("platform", "modelship-system",
                                                                            "operator")
    monkeypatch.setenv("MODELSHIP_NOTIFICATIONS", '[{"name": "x", "events": ["Rolledback"]}]')
    with pytest.raises(ValueError, match=r"MODELSHIP_NOTIFICATIONS: \[0\.events\.0\]"):
        Settings.from_env()


async def test_notifications_are_offered_only_when_the_decision_is_published() -> None:
    """Given v2 failing its checks with an object-level and an operator-level subscription, when the reconcile
    that rolls it back runs, then its notifications wait in the result (a status write that loses a conflict
    announces nothing) and are offered once `publish` runs: the object's Secrets in its namespace, the
    operator's in the operator's."""
    notifier = Collected()
    platform = Subscriber(Subscription.model_validate({**WEBHOOK, "name": "platform"}), "modelship-system",
                          level="operator")
    rec = Reconciler(FakeCluster(), FakeRouters(), FailingMetrics(), PassingChecks(), ManualClock(NOW), Telemetry(),
                     notifier=notifier, subscribers=(platform,))
    spec = {**V2, "notifications": [CHAT]}
    status = (await rec.reconcile(body(SPEC))).status
    status = (await rec.reconcile(body(SPEC, status))).status
    status = (await rec.reconcile(body(spec, status, generation=2))).status
    status = (await rec.reconcile(body(spec, status, generation=2))).status
    assert notifier.offered == []  # rollout started, validated, first step: nothing anyone subscribed to
    results = []
    while status["phase"] != "RolledBack":
        assert isinstance(rec.clock, ManualClock)
        rec.clock.advance(60)
        result = await rec.step(body(spec, status, generation=2))
        results.append(result)
        status = result.status
    said = [(n.event, n.subscriber.subscription.name) for r in results for n in r.notifications]
    assert said == [("AnalysisFailed", "platform")] * len(results) + [("RolledBack", "platform"),
                                                                       ("RolledBack", "oncall")]
    await rec.publish(rec_owner(), results[-1])
    assert [(n.event, n.subscriber.level, n.subscriber.secret_namespace) for n in notifier.offered] == [
        ("AnalysisFailed", "operator", "modelship-system"), ("RolledBack", "operator", "modelship-system"),
        ("RolledBack", "object", "ml")]


def rec_owner() -> Any:
    from modelship.controller.reconciler import owner_of  # noqa: PLC0415

    return owner_of(body(SPEC))


class PassingMetrics:
    async def snapshot(self, *args: Any, **kwargs: Any) -> MetricsSnapshot:
        return MetricsSnapshot(available=True, canary_requests=1000,
                               values={"errorRate": MetricValue(canary=0.0, stable=0.0)})


async def test_a_gate_is_announced_once_when_the_rollout_reaches_it() -> None:
    """Given steps 25% for 1m then an approval gate, when v2 advances to the gate and then waits there through
    several reconciles, then exactly one decision emits ApprovalRequired and notifies (the first version of
    this Event was emitted only by a code path the step transition never took: found by the e2e scenario)."""
    notifier = Collected()
    rec = Reconciler(FakeCluster(), FakeRouters(), PassingMetrics(), PassingChecks(), ManualClock(NOW), Telemetry(),
                     notifier=notifier)
    gated = {**SPEC, "rollout": {"canary": {"steps": [{"weight": 25, "duration": "1m"}, {"approval": {}}]}},
             "notifications": [WEBHOOK]}
    v2 = {**gated, "model": {**SPEC["model"], "version": "2"}}
    status = (await rec.reconcile(body(gated))).status
    status = (await rec.reconcile(body(gated, status))).status
    announced = []
    for _ in range(10):
        result = await rec.reconcile(body(v2, status, generation=2))
        status = result.status
        announced += [event.reason for event in result.events if event.reason == "ApprovalRequired"]
        assert isinstance(rec.clock, ManualClock)
        rec.clock.advance(30)
    assert status["awaitingApproval"] and status["step"] == 1
    assert announced == ["ApprovalRequired"]
    assert [n.event for n in notifier.offered] == ["ApprovalRequired"]
    assert "kubectl modelship promote" in notifier.offered[0].payload["message"]


def test_the_field_is_events_because_yaml_reads_on_as_true() -> None:
    """YAML 1.1 (PyYAML, and the sigs.k8s.io/yaml that kubectl and helm use) reads a key `on` as the boolean
    true, so a field named `on` could never be written in a manifest: it is `events`, and the example with
    notifications parses with the events it names."""
    import yaml  # noqa: PLC0415

    assert yaml.safe_load("on: [RolledBack]") == {True: ["RolledBack"]}
    example = Path(__file__).parents[2] / "examples" / "replica-ratio.yaml"
    spec = ModelDeploymentSpec.model_validate(yaml.safe_load(example.read_text())["spec"])
    assert [s.events for s in spec.notifications] == [["ApprovalRequired", "RolledBack", "Promoted"],
                                                      ["RolledBack"]]
    assert not semantic_problems(spec)
