"""The comparator against real tritonserver processes (the stack's launcher and fault-injecting repositories):
a retrained version moves its answers a little, a silently wrong one (shifted, constant, swapped inputs) a lot
or on every pair, and a version with another output name or datatype disagrees with a reason, not a crash.

Requests are what the traffic generator sends (x FP32 [1,4], uniform in [0,1)), in JSON and in the binary
tensor extension, as tritonclient builds them. Measured values are printed (`-s`) for docs/output-comparison.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from modelship.comparator.metrics import ShiftCollector
from modelship.comparator.service import Comparator, Mirrored
from modelship.comparator.tensors import HEADER_LENGTH
from modelship.comparator.upstreams import StaticUpstreams
from modelship.comparator.window import Window
from modelship.domain.compare_spec import CompareSpec

from e2e.stack import triton
from e2e.stack.triton import TritonServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MODEL = "fraud_scorer"
PAIRS = 120
PLAN = {
    "stable": ("main", 1),
    "stable-twin": ("main", 1),
    "retrained": ("main", 2),
    "shifted": ("main", 93),
    "constant": ("main", 94),
    "swapped": ("main", 95),
    "renamed": ("renamed-output", 2),
    "fp64": ("fp64-output", 2),
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    root: Path = tmp_path_factory.mktemp("comparator-triton")
    started: dict[str, TritonServer] = {}
    try:
        for name, (repo, version) in PLAN.items():
            started[name] = triton.start_triton(triton.REPOS_DIR / repo, root / name, model=MODEL, version=version)
        for server in started.values():
            server.wait_ready()
        yield {name: f"http://{server.address}:{server.http_port}" for name, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


def requests(count: int, seed: int = 11) -> list[Mirrored]:
    """Half JSON, half binary tensors, as tritonclient sends them."""
    generator = np.random.default_rng(seed)
    out = []
    for index in range(count):
        binary = index % 2 == 1
        tensor = httpclient.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(generator.random((1, 4), dtype=np.float32), binary_data=binary)
        wanted = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in ("score",)] if binary else None
        body, json_size = httpclient.InferenceServerClient.generate_request_body([tensor], outputs=wanted)
        headers = {"Content-Type": "application/octet-stream" if json_size else "application/json"}
        if json_size:
            headers[HEADER_LENGTH] = str(json_size)
        out.append(Mirrored(f"/v2/models/{MODEL}/infer", headers, body if isinstance(body, bytes) else body.encode()))
    return out


async def compare(servers: dict[str, str], canary: str, spec: CompareSpec | None = None) -> dict[str, float]:
    window = Window(3600)
    comparator = Comparator(spec or CompareSpec(), StaticUpstreams({"stable": [servers["stable"]],
                                                                    "canary": [servers[canary]]}), window)
    await comparator.start()
    started = time.monotonic()
    verdicts = [await comparator.compare(request) for request in requests(PAIRS)]
    elapsed = time.monotonic() - started
    await comparator.stop()
    judged = [v for v in verdicts if v is not None]
    reasons = sorted({o.reason for v in judged for o in v.outputs if not o.agreed})
    shift = ShiftCollector(window, comparator.metrics.labels).output_shift("score")
    result = {"compared": len(judged), "agreement": sum(v.agreed for v in judged) / max(1, len(judged)),
              "shift": shift if shift is not None else float("nan"), "pairs_per_s": len(judged) / elapsed,
              "canary_refused": comparator.metrics.registry.get_sample_value(
                  "modelship_comparator_upstream_failures_total", {"role": "canary", "reason": "status"}) or 0}
    print(f"\n{canary}: {json.dumps(result)} reasons={reasons}")
    return {**result, "reasons": reasons}  # type: ignore[dict-item]


async def test_the_same_version_agrees_on_every_pair_and_has_no_shift(servers: dict[str, str]) -> None:
    result = await compare(servers, "stable-twin")
    assert result["compared"] == PAIRS and result["agreement"] == 1.0 and result["shift"] < 0.01


async def test_a_retrained_version_moves_little_and_passes_the_default_shift_bound(servers: dict[str, str]) -> None:
    result = await compare(servers, "retrained")
    assert result["compared"] == PAIRS
    assert result["shift"] < 0.25, "a normally retrained model must pass the default outputShift max 0.25"
    loose = await compare(servers, "retrained", CompareSpec(absolute=0.02))
    assert loose["agreement"] == 1.0, "within 0.02 of stable's score on every request"


@pytest.mark.parametrize("canary", ["shifted", "constant"])
async def test_a_silently_wrong_version_shifts_far_past_the_default_bound(servers: dict[str, str], canary: str) -> None:
    result = await compare(servers, canary)
    assert result["compared"] == PAIRS and result["agreement"] < 0.1 and result["shift"] > 1.0


async def test_swapped_inputs_disagree_pair_by_pair(servers: dict[str, str]) -> None:
    """Swapped features keep a similar score distribution (shift alone may miss it): agreement catches it."""
    result = await compare(servers, "swapped", CompareSpec(absolute=0.02))
    assert result["compared"] == PAIRS and result["agreement"] < 0.5


async def test_another_datatype_is_a_disagreement_with_its_reason(servers: dict[str, str]) -> None:
    result = await compare(servers, "fp64")
    assert result["compared"] == PAIRS and result["agreement"] == 0.0 and result["reasons"] == ["datatype"]


async def test_another_output_name_is_missing_or_refused_never_a_crash(servers: dict[str, str]) -> None:
    """Requests that name no output: canary's answer lacks `score` (a disagreement). Binary requests that ask for
    `score` by name: canary refuses them (HTTP 400), an upstream failure counted by role and reason."""
    result = await compare(servers, "renamed")
    assert result["compared"] == PAIRS // 2 and result["agreement"] == 0.0 and result["reasons"] == ["missing"]
    assert result["canary_refused"] == PAIRS // 2
