"""`python -m bench [--quick] [--only NAME ...]`: run every benchmark in turn and print their numbers.

decide and reconcile are in-process (no cluster); operator_scale, fleet and failover need the local stack (they
bring it up if needed, never down). Nothing here asserts on timings: numbers are printed and saved under .stack/bench/.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from bench import comparator, decide, failover, fleet, operator_scale, reconcile, side_by_side

BENCHES: dict[str, Callable[[list[str] | None], dict[str, Any]]] = {
    "decide": decide.main,
    "reconcile": reconcile.main,
    "operator_scale": operator_scale.main,
    "fleet": fleet.main,
    "failover": failover.main,
    "side_by_side": side_by_side.main,
    "comparator": comparator.main,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (fewer objects, shorter windows)")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHES), help="run only these benches")
    args = parser.parse_args(argv)
    failed = []
    for name, run in BENCHES.items():
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name} ===", flush=True)
        try:
            run(["--quick"] if args.quick else [])
        except (Exception, SystemExit) as exc:  # one bench failing must not hide the others' numbers
            print(f"{name} failed: {exc!r}", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
