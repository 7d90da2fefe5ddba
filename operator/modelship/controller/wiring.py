"""Build the Reconciler from settings: the one place that picks concrete adapters for the ports."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass

from modelship.adapters.admission import RequesterPolicyCheck
from modelship.adapters.cache import ChildCache, WatchCache
from modelship.adapters.cluster import KubeCluster
from modelship.adapters.gateway_support import GatewaySupportReader
from modelship.adapters.informer import ChildInformer
from modelship.adapters.kube import Kube, KubeError
from modelship.adapters.leader import LeaderElector
from modelship.adapters.metrics.base import AnalysisQuery
from modelship.adapters.metrics.factory import MetricsSettings, MetricsSources
from modelship.adapters.metrics.prometheus import PrometheusSettings
from modelship.adapters.modeldeployments import ModelDeploymentWrites
from modelship.adapters.notify import NotificationSender
from modelship.adapters.routers.factory import RouterFactory
from modelship.adapters.telemetry import Telemetry
from modelship.adapters.transport import AsyncTransport
from modelship.adapters.triton import TritonValidator
from modelship.controller.clock import Clock, SystemClock
from modelship.controller.loop import ControlLoop
from modelship.controller.notifying import build_sender, operator_subscribers
from modelship.controller.ports import Owner
from modelship.controller.reconciler import Reconciler
from modelship.controller.settings import Settings
from modelship.domain.api import ModelDeploymentSpec
from modelship.domain.observations import MetricsSnapshot, ValidationReport
from modelship.domain.status import Revision

log = logging.getLogger("modelship.wiring")


class PrometheusMetrics:
    """Metrics port: per-namespace Prometheus (namespace annotation override), one query round per check."""

    def __init__(
        self, sources: MetricsSources, kube: Kube, cache_seconds: float = 60.0, min_window_seconds: float = 10.0
    ) -> None:
        self.sources = sources
        self.kube = kube
        self.min_window_seconds = min_window_seconds
        self.cache_seconds = cache_seconds
        self._annotations: dict[str, tuple[float, Mapping[str, str]]] = {}

    async def _namespace_annotations(self, namespace: str) -> Mapping[str, str]:
        """Cached for a minute: one Namespace read per namespace, not one per analysis round."""
        cached = self._annotations.get(namespace)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        annotations = await self._read_annotations(namespace)
        self._annotations[namespace] = (time.monotonic(), annotations)
        return annotations

    async def _read_annotations(self, namespace: str) -> Mapping[str, str]:
        try:
            ns = await self.kube.read(f"/api/v1/namespaces/{namespace}")
        except KubeError as exc:  # no right to read namespaces: use the operator-wide Prometheus
            log.debug("namespace %s not readable (%s); using the default Prometheus", namespace, exc.reason)
            return {}
        return dict((ns or {}).get("metadata", {}).get("annotations") or {})

    async def snapshot(
        self, owner: Owner, spec: ModelDeploymentSpec, canary: Revision, stable: Revision | None, window_s: float,
        comparing: bool = False,
    ) -> MetricsSnapshot:
        source = self.sources.for_namespace(await self._namespace_annotations(owner.namespace))
        query = AnalysisQuery(
            namespace=owner.namespace,
            name=owner.name,
            model=spec.model.name,
            version=canary.version,
            canary_revision=canary.hash,
            stable_revision=stable.hash if stable else None,
            # a window shorter than ~4 scrapes makes increase() come back empty at random (NoData)
            window_seconds=int(max(window_s, self.min_window_seconds)),
            slo=spec.slo,
            stable_version=stable.version if stable else None,
            comparing=comparing,
        )
        return await source.snapshot(query)


class TritonChecks:
    """ModelChecker port over tritonclient: only pods the ModelDeployment controls (uid chain)."""

    def __init__(self, validator: TritonValidator) -> None:
        self.validator = validator

    async def validate(
        self, spec: ModelDeploymentSpec, canary_ips: list[str], stable_ip: str | None
    ) -> ValidationReport:
        return await self.validator.validate(
            spec.model.name, spec.model.version, canary_ips, spec.validation, stable_pod=stable_ip
        )


@dataclass
class Operator:
    """Everything `modelship run` starts: the control loop, the watch cache it reads, the leader election."""

    loop: ControlLoop
    informer: ChildInformer
    """Fills the watch cache the reconciler reads (`informer.cache`)."""
    elector: LeaderElector
    transport: AsyncTransport
    notifier: NotificationSender
    """Delivers notifications queued by reconciles (its own tasks, off the reconcile path)."""


def child_namespaces(namespaces: tuple[str, ...]) -> tuple[str, ...]:
    """The namespaces to list and watch children in: the served ones, or the whole cluster when none are
    named or when some are kopf glob patterns."""
    if any(set(n) & set("*?[!") for n in namespaces):
        return ()
    return namespaces


def build_operator(settings: Settings, kubeconfig: str | None = None) -> Operator:
    """The watch-driven operator: children from watch caches, writes fenced by the Lease."""
    queue_paused = settings.leader_election

    def lost() -> None:  # called in the election thread: stop reconciling, the fence already refuses writes
        operator.loop.queue.paused = True
        log.error("leadership lost: this replica stops reconciling and exits so that it restarts as a standby")
        os.kill(os.getpid(), signal.SIGTERM)

    elector = LeaderElector(settings, on_lost=lost, kubeconfig=kubeconfig)
    # Fenced twice: before a write queues behind the rate limiter (no token spent on a refused write) and
    # again when the limiter lets it go (the lease may have moved on while it waited).
    transport = AsyncTransport.from_kubeconfig(kubeconfig, qps=settings.api_qps, burst=settings.api_burst,
                                               fence=elector.fence)
    kube = Kube(transport, fence=elector.fence)
    cache = WatchCache(kube)
    reconciler = build_reconciler(settings, kube=kube, cache=cache)
    transport.observer = reconciler.telemetry.observe_request
    loop = ControlLoop(reconciler, ModelDeploymentWrites(kube), reconciler.telemetry, workers=settings.workers,
                       resync_seconds=settings.resync_seconds, leading=elector.is_leader)
    loop.queue.paused = queue_paused
    informer = ChildInformer(kube, cache, loop.wake, child_namespaces(settings.namespaces))
    assert isinstance(reconciler.notifier, NotificationSender)
    operator = Operator(loop, informer, elector, transport, reconciler.notifier)
    return operator


def build_reconciler(
    settings: Settings, clock: Clock | None = None, kubeconfig: str | None = None, *, kube: Kube | None = None,
    cache: ChildCache | None = None,
) -> Reconciler:
    """Concrete adapters for a real cluster and Prometheus (children listed over the API unless `cache`)."""
    if kube is None:
        kube = Kube(AsyncTransport.from_kubeconfig(kubeconfig, qps=settings.api_qps, burst=settings.api_burst))
    prometheus = PrometheusSettings(
        url=settings.prometheus_url,
        bearer_token_file=settings.prometheus_token_file,
        ca_file=settings.prometheus_ca_file,
        revision_label=settings.revision_label,
    )
    metrics = PrometheusMetrics(
        MetricsSources(MetricsSettings(prometheus=prometheus)), kube, min_window_seconds=settings.min_window_seconds
    )
    cluster = KubeCluster(kube, cache=cache, comparator_image=settings.comparator_image,
                          comparator_cluster_role=settings.comparator_cluster_role)
    telemetry = Telemetry(max_objects=settings.metrics_max_objects)
    return Reconciler(
        cluster=cluster,
        routers=RouterFactory(kube, cache),
        metrics=metrics,
        checker=TritonChecks(TritonValidator()),
        clock=clock or SystemClock(),
        telemetry=telemetry,
        idle_resync_seconds=settings.resync_seconds,
        requester_policy=RequesterPolicyCheck(kube),
        route_scope=settings.route_scope,
        notifier=build_sender(kube, cluster, telemetry),
        subscribers=operator_subscribers(settings.notifications, settings.notifications_namespace),
        gateway_supports=GatewaySupportReader(kube),
    )

