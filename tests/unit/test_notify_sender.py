"""The notification sender against a real HTTP receiver on loopback: signature, retries, final failures, dedup,
a full queue, and Apprise's JSON service."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from modelship.adapters.notify import NotificationSender, Retry
from modelship.domain.actions import EmitEvent, EventType
from modelship.domain.notifications import Notification, Subscriber, notifications_for
from modelship.domain.notify_spec import Subscription

from tests.unit.test_notifications import NOW, rolled_back_status

KEY = "s3cret-hmac-key"


class Receiver:
    """An HTTP endpoint that answers `statuses` in turn (then 200) and keeps what it got."""

    def __init__(self) -> None:
        self.statuses: list[int] = []
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append((dict(request.headers), await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    found.url = f"http://127.0.0.1:{port}"
    yield found
    await runner.cleanup()


class Secrets:
    """Secrets as the API server returns them (data base64-encoded), by namespace and name."""

    def __init__(self, data: dict[tuple[str, str], dict[str, str]]) -> None:
        self.data = data
        self.reads = 0

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any:
        self.reads += 1
        found = self.data.get((namespace, name))
        if found is None:
            return None
        return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in found.items()}}


class Outcomes:
    def __init__(self) -> None:
        self.counted: list[str] = []
        self.told: list[tuple[bool, str, str]] = []

    def count(self, notification: Notification, outcome: str) -> None:
        self.counted.append(outcome)

    async def tell(self, notification: Notification, warning: bool, reason: str, message: str) -> None:
        self.told.append((warning, reason, message))


def rollback(raw: dict[str, Any], namespace: str = "ml") -> Notification:
    subscriber = Subscriber(Subscription.model_validate(raw), namespace)
    (notification,) = notifications_for("ml", "fraud", "u-1", [subscriber],
                                        [EmitEvent(EventType.WARNING, "RolledBack", "rolled back version 2")],
                                        rolled_back_status(), NOW)
    return notification


HOOK = {"name": "retrain", "webhook": {"url": {"key": "url"}, "signingKey": {"key": "hmac"}}}


def sender(secrets: Secrets, outcomes: Outcomes, slept: list[float] | None = None, **kwargs: Any) -> NotificationSender:
    async def sleep(seconds: float) -> None:
        (slept if slept is not None else []).append(seconds)

    return NotificationSender(secrets, outcomes, Retry(attempts=4, backoff_s=1.0, timeout_s=5.0), sleep=sleep, **kwargs)


async def test_a_webhook_gets_the_evidence_signed_over_the_exact_body(receiver: Receiver) -> None:
    """Given a webhook subscription with a signing key, when a rollback is delivered, then the receiver gets the
    JSON with the evidence and a signature it can verify with the shared key, and the object an Event."""
    secrets = Secrets({("ml", "modelship-notifications"): {"url": f"{receiver.url}/hooks/retrain", "hmac": KEY}})
    outcomes = Outcomes()
    notification = rollback(HOOK)
    assert await sender(secrets, outcomes).deliver(notification)
    ((headers, raw),) = receiver.got
    expected = "sha256=" + hmac.new(KEY.encode(), raw, hashlib.sha256).hexdigest()
    assert headers["X-Modelship-Signature"] == expected
    assert headers["X-Modelship-Event"] == "RolledBack" and headers["X-Modelship-Delivery"] == notification.id
    received = json.loads(raw)
    assert received["event"] == "RolledBack" and received["evidence"]["metrics"][0]["verdict"] == "Fail"
    assert outcomes.counted == ["delivered"]
    assert outcomes.told == [(False, "NotificationSent", "RolledBack sent to retrain")]


async def test_a_receiver_that_is_down_gets_the_delivery_after_backoff(receiver: Receiver) -> None:
    """Given a receiver answering 503 twice (down, restarting), when a rollback is delivered, then it is tried
    again after 1 s and 2 s and arrives on the third attempt with the same delivery id."""
    receiver.statuses = [503, 503]
    secrets = Secrets({("ml", "modelship-notifications"): {"url": receiver.url, "hmac": KEY}})
    outcomes, slept = Outcomes(), []
    assert await sender(secrets, outcomes, slept).deliver(rollback(HOOK))
    assert slept == [1.0, 2.0] and outcomes.counted == ["retried", "retried", "delivered"]
    assert len({headers["X-Modelship-Delivery"] for headers, _ in receiver.got}) == 1 and len(receiver.got) == 3


async def test_an_unreachable_receiver_fails_after_every_attempt_with_a_warning_event() -> None:
    secrets = Secrets({("ml", "modelship-notifications"): {"url": "http://127.0.0.1:9/nobody", "hmac": KEY}})
    outcomes, slept = Outcomes(), []
    assert not await sender(secrets, outcomes, slept).deliver(rollback(HOOK))
    assert slept == [1.0, 2.0, 4.0] and outcomes.counted == ["retried"] * 3 + ["failed"]
    ((warning, reason, message),) = outcomes.told
    assert warning and reason == "NotificationFailed" and "after 4 attempts" in message


@pytest.mark.parametrize(
    "data, fix",
    [
        ({}, "Secret ml/modelship-notifications not found"),
        ({("ml", "modelship-notifications"): {"hmac": KEY}}, "has no key 'url' (notifications[retrain].webhook.url)"),
        ({("ml", "modelship-notifications"): {"url": "ftp://x", "hmac": KEY}}, "must start with http"),
    ],
    ids=["no-secret", "no-key", "bad-scheme"],
)
async def test_what_retrying_cannot_fix_fails_at_once_naming_the_fix(data: dict[Any, Any], fix: str) -> None:
    outcomes, slept = Outcomes(), []
    assert not await sender(Secrets(data), outcomes, slept).deliver(rollback(HOOK))
    assert slept == [] and outcomes.counted == ["failed"]
    assert fix in outcomes.told[0][2]


async def test_a_4xx_answer_is_final_but_429_is_retried(receiver: Receiver) -> None:
    receiver.statuses = [429, 404]
    secrets = Secrets({("ml", "modelship-notifications"): {"url": receiver.url, "hmac": KEY}})
    outcomes = Outcomes()
    assert not await sender(secrets, outcomes).deliver(rollback(HOOK))
    assert outcomes.counted == ["retried", "failed"] and "HTTP 404" in outcomes.told[0][2]


async def test_offers_are_deduplicated_and_a_full_queue_drops_without_blocking(receiver: Receiver) -> None:
    """Given a sender with room for two deliveries, when the same decision is offered twice and then two more,
    then the repeat is counted as a duplicate, the overflow dropped, and the queued ones delivered once each."""
    secrets = Secrets({("ml", "modelship-notifications"): {"url": receiver.url, "hmac": KEY}})
    outcomes = Outcomes()
    queue = sender(secrets, outcomes, queue_size=2)
    first = rollback(HOOK)
    others = [rollback({**HOOK, "name": name}) for name in ("second", "third")]
    for notification in (first, first, *others):
        queue.offer(notification)
    assert outcomes.counted == ["duplicate", "dropped"]
    worker = asyncio.create_task(queue.run())
    await asyncio.wait_for(queue.drain(), 10)
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    assert sorted(h["X-Modelship-Delivery"] for h, _ in receiver.got) == sorted([first.id, others[0].id])


async def test_apprise_delivers_through_its_json_service(receiver: Receiver) -> None:
    """Given an Apprise subscription whose URL (in the Secret) is Apprise's generic JSON service pointed at the
    local receiver, when a rollback is delivered, then the receiver gets Apprise's message with our title and
    the evidence in the body."""
    address = receiver.url.removeprefix("http://")
    secrets = Secrets({("ml", "chat"): {"url": f"json://{address}/chat"}})
    outcomes = Outcomes()
    subscription = {"name": "oncall", "apprise": {"url": {"name": "chat", "key": "url"}}}
    assert await sender(secrets, outcomes).deliver(rollback(subscription))
    ((_, raw),) = receiver.got
    message = json.loads(raw)
    assert message["title"] == "RolledBack: ml/fraud" and message["type"] == "warning"
    assert "errorRate Fail" in message["message"] and "kubectl modelship status -n ml fraud" in message["message"]
