"""Delivers notifications off the reconcile path: a bounded queue, retries with backoff, one delivery per id.

`offer` never blocks and never raises, so a slow or broken receiver can neither delay nor fail a reconcile. Each
notification is tried up to `attempts` times (1 s, 2 s, 4 s, ... capped at `max_backoff_s`); a receiver's 4xx
other than 408/429 and a missing Secret are final at once (retrying cannot fix them). Outcomes are counted in
`modelship_notifications_total` and told as Events on the ModelDeployment (NotificationSent, NotificationFailed).

Webhooks get the JSON payload, signed with HMAC-SHA256 over the exact body when the subscription names a key:
`X-Modelship-Signature: sha256=<hex>`, `X-Modelship-Event`, `X-Modelship-Delivery` (the id, stable across retries).
Chat services go through Apprise (its `async_notify`), whose URL says which service.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from modelship.domain.notifications import Notification
from modelship.domain.notify_spec import SecretKeyRef

log = logging.getLogger("modelship.notify")

SIGNATURE_HEADER = "X-Modelship-Signature"
EVENT_HEADER = "X-Modelship-Event"
DELIVERY_HEADER = "X-Modelship-Delivery"
RETRIED_STATUSES = frozenset({408, 429})


class DeliveryError(Exception):
    """A failed attempt; `final` when retrying cannot help (bad URL, missing Secret, a 4xx answer)."""

    def __init__(self, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


class SecretReader(Protocol):
    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> Any: ...


class Outcomes(Protocol):
    """Where outcomes go: metrics (`count`) and an Event on the object (`tell`)."""

    def count(self, notification: Notification, outcome: str) -> None: ...
    async def tell(self, notification: Notification, warning: bool, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Retry:
    attempts: int = 6
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    timeout_s: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds before attempt number `attempt + 1` (attempt counts from 1)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


async def read_secret(secrets: SecretReader, namespace: str, ref: SecretKeyRef, where: str) -> str:
    secret = await secrets.get("v1", "Secret", namespace, ref.name)
    if secret is None:
        raise DeliveryError(f"Secret {namespace}/{ref.name} not found ({where}): create it, or grant the "
                            "operator its name in the chart's notifications.secretNames", final=True)
    raw = (secret.get("data") or {}).get(ref.key)
    if raw is None:
        raise DeliveryError(f"Secret {namespace}/{ref.name} has no key {ref.key!r} ({where})", final=True)
    try:
        return base64.b64decode(raw).decode().strip()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise DeliveryError(f"Secret {namespace}/{ref.name} key {ref.key!r} is not text ({where})",
                            final=True) from exc


class NotificationSender:
    """The queue and its workers; `run` until cancelled."""

    def __init__(
        self, secrets: SecretReader, outcomes: Outcomes, retry: Retry | None = None, *, queue_size: int = 1000,
        workers: int = 4, remembered: int = 4096, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.secrets = secrets
        self.outcomes = outcomes
        self.retry = retry or Retry()
        self.queue: asyncio.Queue[Notification] = asyncio.Queue(maxsize=queue_size)
        self.workers = workers
        self.sleep = sleep
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._remembered = remembered
        self._session: aiohttp.ClientSession | None = None

    def offer(self, notification: Notification) -> None:
        """Queue one delivery unless its id was queued before; never blocks or raises."""
        if notification.id in self._seen:
            self.outcomes.count(notification, "duplicate")
            return
        self._seen[notification.id] = None
        while len(self._seen) > self._remembered:
            self._seen.popitem(last=False)
        try:
            self.queue.put_nowait(notification)
        except asyncio.QueueFull:
            self.outcomes.count(notification, "dropped")
            log.error("notification %s (%s) dropped: %d deliveries queued", notification.id, notification.event,
                      self.queue.qsize())

    async def run(self) -> None:
        tasks = [asyncio.create_task(self._work(), name=f"notify-{i}") for i in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._session is not None:
                await self._session.close()

    async def drain(self) -> None:
        """Until every queued delivery ended (tests, shutdown)."""
        await self.queue.join()

    async def _work(self) -> None:
        while True:
            notification = await self.queue.get()
            try:
                await self.deliver(notification)
            except Exception:  # a bug here must not stop the worker
                log.exception("notification %s: delivery crashed", notification.id)
            finally:
                self.queue.task_done()

    async def deliver(self, notification: Notification) -> bool:
        """Every attempt of one delivery; whether it was delivered."""
        subscription = notification.subscriber.subscription
        for attempt in range(1, self.retry.attempts + 1):
            try:
                await self._attempt(notification)
            except DeliveryError as exc:
                last = exc.final or attempt == self.retry.attempts
                if not last:
                    self.outcomes.count(notification, "retried")
                    await self.sleep(self.retry.delay(attempt))
                    continue
                self.outcomes.count(notification, "failed")
                tries = "" if exc.final else f" after {attempt} attempts"
                await self.outcomes.tell(notification, True, "NotificationFailed",
                                         f"{notification.event} to {subscription.name} not delivered{tries}: {exc}")
                return False
            self.outcomes.count(notification, "delivered")
            await self.outcomes.tell(notification, False, "NotificationSent",
                                     f"{notification.event} sent to {subscription.name}")
            return True
        return False

    async def _attempt(self, notification: Notification) -> None:
        subscription = notification.subscriber.subscription
        namespace = notification.subscriber.secret_namespace
        where = f"notifications[{subscription.name}]"
        if subscription.webhook is not None:
            url = await read_secret(self.secrets, namespace, subscription.webhook.url, f"{where}.webhook.url")
            key = None
            if subscription.webhook.signing_key is not None:
                key = await read_secret(self.secrets, namespace, subscription.webhook.signing_key,
                                        f"{where}.webhook.signingKey")
            await self._post(url, notification, key)
        elif subscription.apprise is not None:
            url = await read_secret(self.secrets, namespace, subscription.apprise.url, f"{where}.apprise.url")
            await self._apprise(url, notification)

    async def _post(self, url: str, notification: Notification, key: str | None) -> None:
        if not url.startswith(("http://", "https://")):
            raise DeliveryError("webhook URL must start with http:// or https://", final=True)
        body = json.dumps(notification.payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", EVENT_HEADER: notification.event,
                   DELIVERY_HEADER: notification.id}
        if key is not None:
            headers[SIGNATURE_HEADER] = sign(key.encode(), body)
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.retry.timeout_s))
        try:
            async with self._session.post(url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    return
                final = 400 <= response.status < 500 and response.status not in RETRIED_STATUSES
                raise DeliveryError(f"receiver answered HTTP {response.status}", final=final)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from exc

    async def _apprise(self, url: str, notification: Notification) -> None:
        import apprise  # noqa: PLC0415 (imports every service plugin: only when a subscription uses it)

        service = apprise.Apprise()
        if not service.add(url):
            raise DeliveryError("Apprise does not understand the URL (see its supported services)", final=True)
        kind = apprise.NotifyType.WARNING if notification.payload["severity"] == "warning" else apprise.NotifyType.INFO
        sent = await service.async_notify(body=notification.text, title=notification.title, notify_type=kind)
        if not sent:
            raise DeliveryError("Apprise could not deliver (the service refused or was unreachable)")
