"""Operator settings from the environment (the Helm chart sets them); nothing here is per-object state."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pydantic import TypeAdapter, ValidationError

from modelship.adapters.comparator_objects import CLUSTER_ROLE, DEFAULT_COMPARATOR_IMAGE
from modelship.domain.notify_spec import Subscription
from modelship.domain.route_scope import RouteScope


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a number of seconds") from exc


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r} is not a whole number") from exc


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name}={raw!r} is not true or false")


def _subscriptions(name: str) -> tuple[Subscription, ...]:
    """Operator-level notification subscriptions: a JSON list in `name` (the chart renders
    `notifications.subscriptions` into it), each as in `spec.notifications`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return ()
    try:
        return tuple(TypeAdapter(list[Subscription]).validate_json(raw))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ValueError(f"{name}: [{where}] {first['msg']} (each entry as in spec.notifications: name, on, "
                         "webhook or apprise with Secret key references)") from exc


def _patterns(name: str) -> tuple[str, ...]:
    """A comma-separated list of shell-style patterns; blanks dropped."""
    return tuple(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    """Where metrics come from, how the control loop runs (workers, resync, API rate), leader election."""

    prometheus_url: str = "http://127.0.0.1:9090"
    prometheus_token_file: str | None = None
    prometheus_ca_file: str | None = None
    revision_label: str = "modelship_dev_revision"
    metrics_port: int = 8080
    min_window_seconds: float = 10.0
    """Shortest PromQL range: increase() needs at least two scrapes inside it, or it returns nothing."""
    namespaces: tuple[str, ...] = field(default_factory=tuple)
    route_scope: RouteScope = field(default_factory=RouteScope)
    """Istio hosts and gateways beyond the object's own namespace that ModelDeployments may name."""
    api_qps: float = 40.0
    """Client-side rate limit on API requests (token bucket: `api_qps` per second, bursts of `api_burst`)."""
    api_burst: int = 80
    workers: int = 16
    """Reconciles in flight at once (one per object at a time); the rest wait in the queue."""
    resync_seconds: float = 600.0
    """Every object is reconciled from cache this often (jittered +-10%); it writes only on drift."""
    leader_election: bool = True
    lease_name: str = ""
    """'' = derived: `modelship` (+ `-<shard>`), or `modelship-<hash of the watched namespaces>`."""
    lease_namespace: str = ""
    """'' = POD_NAMESPACE, else the one watched namespace, else `default`."""
    lease_duration_seconds: float = 10.0
    renew_deadline_seconds: float = 7.0
    retry_period_seconds: float = 2.0
    shard: str = ""
    """Serve only ModelDeployments labelled `modelship.dev/shard=<shard>` ('' = those without the label)."""
    metrics_max_objects: int = 1000
    """Per-object metric series are kept for at most this many ModelDeployments (rollouts in flight first)."""
    comparator_image: str = DEFAULT_COMPARATOR_IMAGE
    """Image of the shadow comparators the operator deploys: its own (the chart passes it)."""
    comparator_cluster_role: str = CLUSTER_ROLE
    """The ClusterRole each comparator's ServiceAccount is bound to (the chart's is per release)."""
    notifications: tuple[Subscription, ...] = ()
    """Operator-level subscriptions: every ModelDeployment's decisions (besides its own spec.notifications)."""
    notifications_namespace: str = "default"
    """Where the operator-level subscriptions' Secrets are: the operator's own namespace."""

    @classmethod
    def from_env(cls) -> Settings:
        """Read MODELSHIP_* variables; PROMETHEUS_URL is accepted for the local stack's env file."""
        namespaces = tuple(n for n in os.environ.get("MODELSHIP_NAMESPACES", "").split(",") if n)
        return cls(
            prometheus_url=os.environ.get("MODELSHIP_PROMETHEUS_URL")
            or os.environ.get("PROMETHEUS_URL")
            or cls.prometheus_url,
            prometheus_token_file=os.environ.get("MODELSHIP_PROMETHEUS_TOKEN_FILE") or None,
            prometheus_ca_file=os.environ.get("MODELSHIP_PROMETHEUS_CA_FILE") or None,
            revision_label=os.environ.get("MODELSHIP_REVISION_LABEL", cls.revision_label),
            metrics_port=int(os.environ.get("MODELSHIP_METRICS_PORT", cls.metrics_port)),
            min_window_seconds=_float("MODELSHIP_MIN_WINDOW_SECONDS", cls.min_window_seconds),
            namespaces=namespaces,
            route_scope=RouteScope(_patterns("MODELSHIP_ISTIO_ALLOWED_HOSTS"),
                                   _patterns("MODELSHIP_ISTIO_ALLOWED_GATEWAYS")),
            api_qps=_float("MODELSHIP_API_QPS", cls.api_qps),
            api_burst=_int("MODELSHIP_API_BURST", cls.api_burst),
            workers=_int("MODELSHIP_WORKERS", cls.workers),
            resync_seconds=_float("MODELSHIP_RESYNC_SECONDS", cls.resync_seconds),
            leader_election=_bool("MODELSHIP_LEADER_ELECTION", cls.leader_election),
            lease_name=os.environ.get("MODELSHIP_LEASE_NAME", cls.lease_name),
            lease_namespace=os.environ.get("MODELSHIP_LEASE_NAMESPACE", cls.lease_namespace),
            lease_duration_seconds=_float("MODELSHIP_LEASE_DURATION_SECONDS", cls.lease_duration_seconds),
            renew_deadline_seconds=_float("MODELSHIP_RENEW_DEADLINE_SECONDS", cls.renew_deadline_seconds),
            retry_period_seconds=_float("MODELSHIP_RETRY_PERIOD_SECONDS", cls.retry_period_seconds),
            shard=os.environ.get("MODELSHIP_SHARD", cls.shard),
            metrics_max_objects=_int("MODELSHIP_METRICS_MAX_OBJECTS", cls.metrics_max_objects),
            comparator_image=os.environ.get("MODELSHIP_COMPARATOR_IMAGE") or cls.comparator_image,
            comparator_cluster_role=os.environ.get("MODELSHIP_COMPARATOR_CLUSTER_ROLE") or cls.comparator_cluster_role,
            notifications=_subscriptions("MODELSHIP_NOTIFICATIONS"),
            notifications_namespace=os.environ.get("POD_NAMESPACE") or cls.notifications_namespace,
        )
