"""Modelship: judged shadow and canary rollouts for Triton-served models."""
