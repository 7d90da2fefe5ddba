"""Choose the metrics source for a namespace: the operator's Prometheus, or the namespace's own.

Override: annotate the Namespace with `modelship.dev/prometheus-url: https://prom.team-a.svc:9090` to analyse
that namespace's rollouts with another Prometheus (e.g. a per-team instance). Namespaces are cluster-scoped,
so only cluster admins can set it. The operator's credentials are NOT sent to an override URL unless
`forward_credentials_to_overrides` is set: a URL chosen per namespace must not harvest the operator's token.
The CA file and timeouts still apply. Sources are cached per URL so connection pools are shared.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from modelship.adapters.metrics.base import MetricsSource
from modelship.adapters.metrics.prometheus import PrometheusSettings, PrometheusSource

log = logging.getLogger(__name__)

PROMETHEUS_URL_ANNOTATION = "modelship.dev/prometheus-url"


@dataclass(frozen=True)
class MetricsSettings:
    """Operator-wide metrics settings (Helm values -> environment -> controller settings)."""

    prometheus: PrometheusSettings
    allow_namespace_override: bool = True
    forward_credentials_to_overrides: bool = False


def valid_url(url: str) -> bool:
    """http(s) with a host and no embedded credentials."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and parts.username is None


class MetricsSources:
    """Per-namespace choice of MetricsSource, cached by URL."""

    def __init__(
        self,
        settings: MetricsSettings,
        build: Callable[[PrometheusSettings], MetricsSource] = PrometheusSource,
    ) -> None:
        self.settings = settings
        self._build = build
        self._cache: dict[str, MetricsSource] = {}

    def settings_for(self, namespace_annotations: Mapping[str, str] | None = None) -> PrometheusSettings:
        """Prometheus settings for a namespace; an invalid override is ignored (logged without the URL)."""
        base = self.settings.prometheus
        override = (namespace_annotations or {}).get(PROMETHEUS_URL_ANNOTATION, "").strip()
        if not override or not self.settings.allow_namespace_override or override == base.url:
            return base
        if not valid_url(override):
            log.warning("ignoring invalid %s annotation (needs http(s)://host, no credentials)",
                        PROMETHEUS_URL_ANNOTATION)
            return base
        if self.settings.forward_credentials_to_overrides:
            return dataclasses.replace(base, url=override)
        return dataclasses.replace(
            base, url=override, bearer_token=None, bearer_token_file=None, basic_auth=None
        )

    def for_namespace(self, namespace_annotations: Mapping[str, str] | None = None) -> MetricsSource:
        """The source to use for objects in a namespace with these annotations."""
        chosen = self.settings_for(namespace_annotations)
        key = f"{chosen.url}|{chosen.bearer_token_file or ''}|{chosen.bearer_token is not None}"
        source = self._cache.get(key)
        if source is None:
            source = self._cache[key] = self._build(chosen)
        return source
