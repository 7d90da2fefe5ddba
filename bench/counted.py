"""Run `python -m modelship ...` counting its own requests to the API server, by HTTP method.

Why: the API server's `apiserver_request_total` has no per-client label and the stack is shared, so the bench's
API-server figures are estimates (minus a baseline of other clients). This wrapper counts exactly what the
operator process sends, whichever client sends it (the kubernetes client over urllib3, kopf and the async
transport over aiohttp), without changing the operator: it patches the two HTTP libraries' request entry points
before the operator is imported. Watches are counted apart (`WATCH`), as the API server counts them.
Counts go to `--out` (JSON, replaced every second and at exit).

    python -m bench.counted --out FILE --api HOST:PORT -- run --namespace NS ...
"""

from __future__ import annotations

import argparse
import atexit
import json
import runpy
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

COUNTS: Counter[str] = Counter()
LOCK = threading.Lock()


def count(method: str, host: str, url: str, api: str) -> None:
    """One request, if it goes to the API server; watches apart."""
    if host != api:
        return
    query = urlsplit(url).query
    verb = "WATCH" if "watch=true" in query or "watch=1" in query or "watch=True" in query else method.upper()
    with LOCK:
        COUNTS[verb] += 1


def is_watch(params: Any) -> bool:
    """aiohttp query params ask for a watch: kopf passes a dict, the operator's transport (key, value) pairs."""
    pairs = params.items() if isinstance(params, dict) else params or ()
    return any(key == "watch" and str(value).lower() in ("true", "1") for key, value in pairs)


def patch(api: str) -> None:
    import aiohttp  # noqa: PLC0415
    import urllib3.connectionpool  # noqa: PLC0415

    pool = urllib3.connectionpool.HTTPConnectionPool
    urlopen = pool.urlopen

    def counted_urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        count(method, f"{self.host}:{self.port}", url, api)
        return urlopen(self, method, url, *args, **kwargs)

    pool.urlopen = counted_urlopen  # type: ignore[method-assign]
    request = aiohttp.ClientSession._request

    async def counted_request(self: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
        url = str(str_or_url)
        parts = urlsplit(url)
        watch = is_watch(kwargs.get("params"))
        count(method, f"{parts.hostname}:{parts.port}", url + ("?watch=true" if watch else ""), api)
        return await request(self, method, str_or_url, *args, **kwargs)

    aiohttp.ClientSession._request = counted_request  # type: ignore[method-assign]


def dump(out: Path) -> None:
    with LOCK:
        body = json.dumps(dict(COUNTS))
    tmp = out.with_suffix(".tmp")
    tmp.write_text(body)
    tmp.replace(out)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.counted", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--api", required=True, help="API server host:port (as in the kubeconfig)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="-- then modelship's own arguments")
    options = parser.parse_args()
    patch(options.api)
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(1.0):
            dump(options.out)

    threading.Thread(target=loop, daemon=True, name="request-counts").start()
    atexit.register(lambda: dump(options.out))
    sys.argv = ["modelship", *[a for a in options.args if a != "--"]]
    runpy.run_module("modelship", run_name="__main__", alter_sys=True)


def read(out: Path) -> Counter[str]:
    """The counts the wrapper last wrote (empty before the first write)."""
    try:
        return Counter(json.loads(out.read_text()))
    except (OSError, ValueError):
        return Counter()


if __name__ == "__main__":
    main()
