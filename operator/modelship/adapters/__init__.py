"""Adapters: the Kubernetes, traffic-router, Prometheus and Triton clients behind the controller's ports."""
