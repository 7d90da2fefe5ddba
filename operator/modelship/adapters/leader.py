"""Lease-based leader election (`coordination.k8s.io/v1` Lease) on the kubernetes client's own implementation.

The election rules are the stock `kubernetes.leaderelection` ones: create the Lease when it is missing, wait
out a holder whose record has not changed for a full lease duration since *this* replica saw it change, keep
`acquireTime` across renewals; every write is a PUT guarded by `resourceVersion`, so two replicas can never both
win one round. Wrapped here, because the stock loop does not fit a fleet operator:

- Renewal cost: the stock code GETs the Lease before every PUT. While this replica holds the Lease and its last
  write succeeded, a renewal is one PUT with the resourceVersion that write returned; only a conflict falls
  back to the stock GET-then-PUT. Leader: one request per retry period; standby: one GET per retry period.
- Fencing by time: `is_leader()` is true only while `monotonic() < last successful renewal's start +
  renew_deadline`. A standby takes over no sooner than `lease_duration > renew_deadline` after it *observed*
  that renewal (which is after it started), so a replica that is paused (SIGSTOP), partitioned or slow stops
  counting itself leader before anyone else can start.
- The stock loops sleep uninterruptibly and measure deadlines on the wall clock; here one `tick()` per retry
  period runs on a monotonic clock, a stop event ends it, and a lost lease calls `on_lost` instead of
  returning from `run()`.
- The stock `Config` calls `sys.exit` on bad timings; they are checked first with errors naming the setting.

The election uses its own API client (never queued behind the workers' rate limiter: a throttled renewal would
cost the lease) and runs in a daemon thread, so the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import importlib
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from modelship.adapters.kube import NOT_LEADER, KubeError
from modelship.adapters.transport import client_configuration

log = logging.getLogger("modelship.leader")

_election: Any = importlib.import_module("kubernetes.leaderelection.leaderelection")
_config: Any = importlib.import_module("kubernetes.leaderelection.electionconfig")
_record: Any = importlib.import_module("kubernetes.leaderelection.leaderelectionrecord")
_leaselock: Any = importlib.import_module("kubernetes.leaderelection.resourcelock.leaselock")
_ApiException: Any = importlib.import_module("kubernetes.client.exceptions").ApiException

CONFLICT = 409
LEASE_PREFIX = "modelship"
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
Clock = Callable[[], float]


class ElectionSettings(Protocol):
    """The `Settings` fields the election reads (controller.settings.Settings has them all)."""

    @property
    def leader_election(self) -> bool: ...
    @property
    def lease_name(self) -> str: ...
    @property
    def lease_namespace(self) -> str: ...
    @property
    def lease_duration_seconds(self) -> float: ...
    @property
    def renew_deadline_seconds(self) -> float: ...
    @property
    def retry_period_seconds(self) -> float: ...
    @property
    def shard(self) -> str: ...
    @property
    def namespaces(self) -> tuple[str, ...]: ...


def lease_name(settings: ElectionSettings) -> str:
    """`modelship`, `-<shard>` for a shard, `-<hash>` of the watched namespaces when not watching all of them:
    operators that serve different objects must not wait on one another's Lease."""
    if settings.lease_name:
        return _checked_name(settings.lease_name, "MODELSHIP_LEASE_NAME", "use a DNS subdomain name")
    parts = [LEASE_PREFIX]
    if settings.shard:
        parts.append(settings.shard)
    if settings.namespaces:
        watched = ",".join(sorted(set(settings.namespaces)))
        parts.append(hashlib.sha256(watched.encode()).hexdigest()[:8])
    return _checked_name("-".join(parts), f"MODELSHIP_SHARD={settings.shard!r}",
                         "set MODELSHIP_LEASE_NAME to a valid name for this shard's Lease")


def _checked_name(name: str, setting: str, fix: str) -> str:
    if len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        raise ValueError(f"{setting}: {name!r} is not a valid Lease name (lowercase letters, digits, '-', '.'; "
                         f"at most 253 characters): {fix}")
    return name


def lease_namespace(settings: ElectionSettings, environ: Mapping[str, str] = os.environ) -> str:
    """Where the Lease lives: the setting, else the pod's namespace, else the one watched namespace."""
    if settings.lease_namespace:
        return settings.lease_namespace
    if environ.get("POD_NAMESPACE"):
        return environ["POD_NAMESPACE"]
    if len(set(settings.namespaces)) == 1:
        return settings.namespaces[0]
    return "default"


def new_identity(environ: Mapping[str, str] = os.environ) -> str:
    """Pod (or host) name, pid and a random suffix: a restarted container never mistakes the old holder for
    itself, and `kubectl get lease` names the pod."""
    host = environ.get("POD_NAME") or socket.gethostname()
    return f"{host}_{os.getpid()}_{secrets.token_hex(3)}"


def _check_timing(settings: ElectionSettings) -> tuple[int, float, float]:
    """(lease duration, renew deadline, retry period), or a ValueError naming the variable to fix."""
    duration = settings.lease_duration_seconds
    deadline = settings.renew_deadline_seconds
    retry = settings.retry_period_seconds
    if duration != int(duration) or duration < 1:
        raise ValueError(f"MODELSHIP_LEASE_DURATION_SECONDS={duration}: a Lease counts whole seconds; "
                         "use a whole number >= 1")
    if retry < 1:
        raise ValueError(f"MODELSHIP_RETRY_PERIOD_SECONDS={retry}: use at least 1 second")
    if deadline >= duration:
        raise ValueError(f"MODELSHIP_RENEW_DEADLINE_SECONDS={deadline} must be shorter than "
                         f"MODELSHIP_LEASE_DURATION_SECONDS={duration}: a leader that cannot renew must stop "
                         "before a standby may take over")
    if deadline <= 1.2 * retry:
        raise ValueError(f"MODELSHIP_RENEW_DEADLINE_SECONDS={deadline} must exceed 1.2 x "
                         f"MODELSHIP_RETRY_PERIOD_SECONDS={retry}, so a leader gets several renewal attempts")
    return int(duration), deadline, retry


def _now() -> str:
    """A record time in the stock format (local, naive; the lock stores it as UTC)."""
    return str(datetime.datetime.now())


class _LeaseLock(_leaselock.LeaseLock):  # type: ignore[misc]
    """The stock LeaseLock, plus: it keeps the Lease every write returns (the stock one keeps the pre-write
    copy, so a PUT without a fresh GET would conflict), a request timeout, and the last failure's status."""

    def __init__(self, name: str, namespace: str, identity: str, api: Any, timeout_s: float) -> None:
        super().__init__(name, namespace, identity)
        self.api_instance = api
        self.timeout_s = timeout_s
        self.last_status = 0

    def get(self, name: str, namespace: str) -> tuple[bool, Any]:
        try:
            lease = self.api_instance.read_namespaced_lease(name, namespace, _request_timeout=self.timeout_s)
        except _ApiException as exc:
            self.last_status = exc.status or 0
            return False, exc
        self.lease_reference = lease
        return True, self.get_lock_object(lease)

    def create(self, name: str, namespace: str, election_record: Any) -> bool:
        body = _leaselock.client.V1Lease(metadata={"name": name}, spec=self.get_lease_spec(election_record))
        try:
            self.lease_reference = self.api_instance.create_namespaced_lease(
                namespace, body, _request_timeout=self.timeout_s)
        except _ApiException as exc:
            self.last_status = exc.status or 0
            log.info("could not create Lease %s/%s: %s", namespace, name, exc.reason)
            return False
        return True

    def update(self, name: str, namespace: str, updated_record: Any) -> bool:
        if self.lease_reference is None:
            return False
        self.lease_reference.spec = self.get_lease_spec(updated_record, self.lease_reference.spec)
        try:
            self.lease_reference = self.api_instance.replace_namespaced_lease(
                name=name, namespace=namespace, body=self.lease_reference, _request_timeout=self.timeout_s)
        except _ApiException as exc:
            self.last_status = exc.status or 0
            log.info("could not update Lease %s/%s: %s", namespace, name, exc.reason)
            return False
        return True


class _Election(_election.LeaderElection):  # type: ignore[misc]
    """The stock election with a one-PUT renewal while holding, and the holder's silence timed on `clock`."""

    observed_record: Any
    election_config: Any

    def __init__(self, config: Any, clock: Clock) -> None:
        self._clock = clock
        self._observed_at = clock()
        self.holding = False
        super().__init__(config)

    @property
    def observed_time_milliseconds(self) -> int:
        """The stock code compares this with `time.time()` to see whether a holder's lease ran out; it is the
        wall-clock moment as far back as the monotonic time elapsed since the record last changed, so a step
        of the wall clock cannot cut a standby's wait short."""
        return int((time.time() - (self._clock() - self._observed_at)) * 1000)

    @observed_time_milliseconds.setter
    def observed_time_milliseconds(self, _wall_ms: int) -> None:
        self._observed_at = self._clock()

    def try_acquire_or_renew(self) -> bool:
        config = self.election_config
        lock = config.lock
        observed: Any = self.observed_record
        if self.holding and observed is not None:
            record = _record.LeaderElectionRecord(
                lock.identity, str(config.lease_duration), observed.acquire_time, _now())
            if lock.update(lock.name, lock.namespace, record):
                self.observed_record = record
                self.observed_time_milliseconds = 0
                return True
            self.holding = False
            if lock.last_status != CONFLICT:
                return False
        won: bool = super().try_acquire_or_renew()
        self.holding = won
        return won


class LeaderElector:
    """One replica's candidacy for the operator's Lease; `is_leader()` gates every write (see `fence`)."""

    def __init__(
        self,
        settings: ElectionSettings,
        *,
        api: Any = None,
        on_lost: Callable[[], None] | None = None,
        clock: Clock = time.monotonic,
        identity: str | None = None,
        environ: Mapping[str, str] = os.environ,
        kubeconfig: str | None = None,
    ) -> None:
        """`api`: a `CoordinationV1Api` (else built from the in-cluster account, or `kubeconfig` / $KUBECONFIG);
        `on_lost`: called in the election thread when a held lease is lost (not on `release()`)."""
        self.enabled = settings.leader_election
        self.name = lease_name(settings)
        self.namespace = lease_namespace(settings, environ)
        self.identity = identity or new_identity(environ)
        self.lease_duration, self.renew_deadline, self.retry_period = _check_timing(settings)
        self._clock = clock
        self._on_lost = on_lost
        self._renewed_at: float | None = None
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._election: Any = None
        if self.enabled:
            lock = _LeaseLock(self.name, self.namespace, self.identity, api or _coordination_api(kubeconfig),
                              timeout_s=self.renew_deadline / 2)
            config = _config.Config(lock, self.lease_duration, self.renew_deadline, self.retry_period,
                                    onstarted_leading=_nothing, onstopped_leading=_nothing)
            self._election = _Election(config, clock)

    def start(self) -> None:
        """Campaign (and renew) in a daemon thread, one `tick()` per retry period, until `release()`."""
        if not self.enabled or self._thread is not None:
            return
        # The stock code logs every standby round at INFO; transitions are logged here instead.
        logging.getLogger("leaderelection").setLevel(logging.WARNING)
        log.info("campaigning for Lease %s/%s as %s", self.namespace, self.name, self.identity)
        self._thread = threading.Thread(target=self._run, name="modelship-leader-election", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.tick())

    def tick(self) -> float:
        """One election round (acquire or renew); returns the seconds until the next. Public so that tests
        can drive it with a fake clock."""
        lost = False
        with self._mutex:
            if self._stop.is_set():
                return 0.0
            started = self._clock()
            try:
                won = bool(self._election.try_acquire_or_renew())
            except Exception:  # an unreachable server, a TLS error: a failed round, never a dead thread
                log.warning("Lease %s/%s round failed", self.namespace, self.name, exc_info=True)
                won = False
            if won:
                if self._renewed_at is None:
                    log.info("leading: Lease %s/%s held by %s", self.namespace, self.name, self.identity)
                self._renewed_at = started
            elif self._renewed_at is not None and (
                self._clock() >= self._renewed_at + self.renew_deadline or self._someone_else_holds()
            ):
                self._renewed_at = None
                lost = True
        if won:
            self._wake_waiters()
        if lost:
            log.warning("lost Lease %s/%s: stop writing", self.namespace, self.name)
            if self._on_lost is not None:
                self._on_lost()
        return self.retry_period

    def _someone_else_holds(self) -> bool:
        record = self._election.observed_record
        return record is not None and record.holder_identity != self.identity

    @property
    def renewed_at(self) -> float | None:
        """When (on the election clock) the last successful renewal was sent; None while not leading."""
        return self._renewed_at

    def is_leader(self) -> bool:
        """True only while the last successful renewal is younger than the renew deadline (always, when
        leader election is off)."""
        if not self.enabled:
            return True
        renewed = self._renewed_at
        return renewed is not None and self._clock() < renewed + self.renew_deadline

    def fence(self) -> None:
        """Called before every write: refuses it unless this replica leads."""
        if not self.is_leader():
            raise KubeError(0, NOT_LEADER,
                            f"{self.identity} does not hold Lease {self.namespace}/{self.name}; write refused")

    async def wait_until_leader(self) -> None:
        """Return once this replica leads (at once when leader election is off)."""
        loop = asyncio.get_running_loop()
        while not self.is_leader():
            future: asyncio.Future[None] = loop.create_future()
            entry = (loop, future)
            with self._waiters_lock:
                self._waiters.append(entry)
            try:
                if not self.is_leader():  # it may have won between the check and the registration
                    await future
            finally:
                with self._waiters_lock:
                    if entry in self._waiters:
                        self._waiters.remove(entry)

    def _wake_waiters(self) -> None:
        with self._waiters_lock:
            waiters = list(self._waiters)
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: nobody is waiting there any more
                continue

    def release(self) -> bool:
        """Stop campaigning and, if this replica still holds the Lease, give it up (empty holder, 1 s
        duration) so a standby takes over on its next round instead of after a lease duration. Returns
        whether it was given up. The PUT carries the resourceVersion of our last write: if anyone else
        wrote since, it conflicts and changes nothing."""
        self._stop.set()
        if not self.enabled:
            return False
        with self._mutex:
            held = self.is_leader() and self._election.holding
            self._renewed_at = None
            if not held:
                return False
            self._election.holding = False
            lock = self._election.election_config.lock
            now = _now()
            released = bool(lock.update(lock.name, lock.namespace, _record.LeaderElectionRecord("", "1", now, now)))
        log.info("released Lease %s/%s" if released else "could not release Lease %s/%s",
                 self.namespace, self.name)
        return released


def _nothing() -> None:
    """The stock Config demands callbacks; `tick()` replaces the stock loop that would call them."""


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _coordination_api(kubeconfig: str | None) -> Any:
    """A `CoordinationV1Api` on its own connection pool: the in-cluster account in a pod, else kubeconfig."""
    client: Any = importlib.import_module("kubernetes.client")
    return client.CoordinationV1Api(client.ApiClient(client_configuration(kubeconfig)))
