"""Metrics providers behind `MetricsSource`; `factory.MetricsSources` picks one per namespace."""
