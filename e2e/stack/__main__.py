"""``python -m e2e.stack up|down|status|env``: bring the local stack up or down, or inspect it."""

from __future__ import annotations

import sys

from e2e.stack.orchestrator import ENV_FILE, down, status, up


def main(argv: list[str]) -> int:
    """CLI entry point."""
    cmd = argv[0] if argv else "status"
    try:
        if cmd == "up":
            up()
        elif cmd == "down":
            down()
        elif cmd == "status":
            return status()
        elif cmd == "env":
            if not ENV_FILE.exists():
                print("stack is not up: run `make cluster-up`", file=sys.stderr)
                return 1
            sys.stdout.write(ENV_FILE.read_text())
        else:
            print("usage: python -m e2e.stack up|down|status|env", file=sys.stderr)
            return 2
    except RuntimeError as exc:  # StackError, or a kubectl or hook failure: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
