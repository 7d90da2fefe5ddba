"""Domain: pure API models, the rollout engine and SLO assessment. No I/O, no clients."""
