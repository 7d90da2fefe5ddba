"""Controller: gathers observations, runs the pure engine, applies its actions through adapters."""
