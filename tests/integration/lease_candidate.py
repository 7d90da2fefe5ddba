"""A lone Lease candidate process for test_leader_election.py, so the test can SIGKILL or SIGSTOP a leader.

Usage: python lease_candidate.py LEASE NAMESPACE DURATION DEADLINE RETRY (KUBECONFIG from the environment).
Prints `clock T` for every reading of its election clock *before* the value is used (so the largest printed T
bounds its last renewal from above, even if it is stopped mid-round), `leader` once it leads, `lost` if it
loses the Lease.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from modelship.adapters.leader import LeaderElector
from modelship.controller.settings import Settings


def clock() -> float:
    now = time.monotonic()
    print(f"clock {now}", flush=True)
    return now


def main(lease: str, namespace: str, duration: str, deadline: str, retry: str) -> None:
    settings = Settings(lease_name=lease, lease_namespace=namespace, lease_duration_seconds=float(duration),
                        renew_deadline_seconds=float(deadline), retry_period_seconds=float(retry))
    elector = LeaderElector(settings, clock=clock, on_lost=lambda: print("lost", flush=True))
    elector.start()
    asyncio.run(elector.wait_until_leader())
    print("leader", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(*sys.argv[1:6])
