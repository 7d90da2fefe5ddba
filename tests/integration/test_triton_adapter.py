"""TritonValidator against real tritonserver processes (nvidia-pytriton's binary) on 127.0.0.1.

Servers come from the stack's launcher (e2e/stack/triton.py) and its fault-injecting repositories
(e2e/models/repos): `main` (x FP32 [-1,4] -> score FP32 [-1,1]), `renamed-output` (score -> risk),
`fp64-output` (score FP64), and main's version 92, which refuses to load.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from modelship.adapters.triton import TritonSettings, TritonValidator
from modelship.domain.api import ContractMode, Validation
from modelship.domain.observations import ValidationFailure

from e2e.stack import triton
from e2e.stack.triton import TritonServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

MODEL = "fraud_scorer"
X = [0.1, 0.2, 0.3, 0.4]
V2_WEIGHTS, V2_BIAS = [0.36, 0.3, 0.2, 0.14], 0.02  # e2e/models/repos/main/fraud_scorer/2/behavior.json


def v2_score() -> float:
    logit = sum(w * x for w, x in zip(V2_WEIGHTS, X, strict=True)) + V2_BIAS
    return 1.0 / (1.0 + math.exp(-logit))


def _wait_live(server: TritonServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited:\n{server.log_tail()}")
        if triton.http_ok(f"{server.http_url}/v2/health/live"):
            return
        time.sleep(0.1)
    raise TimeoutError(server.log_tail())


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, TritonServer]]:
    """stable (v1), canary (v2), renamed (v2), fp64 (v2), broken (v92 fails to load); all started at once."""
    root: Path = tmp_path_factory.mktemp("triton")
    repos = triton.REPOS_DIR
    plan = {
        "stable": (repos / "main", 1, ()),
        "canary": (repos / "main", 2, ()),
        "renamed": (repos / "renamed-output", 2, ()),
        "fp64": (repos / "fp64-output", 2, ()),
        "broken": (repos / "main", 92, ("--exit-on-error=false", "--strict-readiness=false")),
    }
    started: dict[str, TritonServer] = {}
    try:
        for name, (repo, version, extra) in plan.items():
            started[name] = triton.start_triton(
                repo, root / name, model=MODEL, version=version, extra_args=extra
            )
        for server in started.values():
            _wait_live(server)
        for name in ("stable", "canary", "renamed", "fp64"):
            started[name].wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()


def addr(server: TritonServer) -> str:
    return f"{server.address}:{server.http_port}"


def validation(contract: str = "Strict", expect: Mapping[str, object] | None = None) -> Validation:
    expected = expect if expect is not None else {"name": "score", "datatype": "FP32", "shape": [1, 1],
                                                  "data": [v2_score()], "tolerance": 1e-5}
    return Validation.model_validate(
        {
            "contract": contract,
            "samples": [
                {"name": "typical", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}],
                 "expect": {"outputs": [expected]}}
            ],
        }
    )


VALIDATOR = TritonValidator(TritonSettings(timeout_s=3.0, infer_timeout_s=5.0))


async def test_healthy_canary_passes_contract_and_samples(servers: dict[str, TritonServer]) -> None:
    t0 = time.monotonic()
    report = await VALIDATOR.validate(
        MODEL, "2", [addr(servers["canary"])], validation(), stable_pod=addr(servers["stable"])
    )
    elapsed = time.monotonic() - t0
    assert report.passed, report.message
    assert report.failure is None and report.pods_checked == 1
    assert "contract Strict matches stable" in report.message and "1 sample(s) passed" in report.message
    assert elapsed < 2.0, f"validation took {elapsed:.2f}s"
    print(f"validate(pass) took {elapsed * 1000:.0f} ms")


async def test_two_pods_are_all_checked(servers: dict[str, TritonServer]) -> None:
    pods = [addr(servers["canary"]), f"127.0.0.1:{servers['canary'].http_port}"]
    report = await VALIDATOR.validate(MODEL, "2", pods, validation(), stable_pod=addr(servers["stable"]))
    assert report.passed and report.pods_checked == 2


async def test_renamed_output_is_a_contract_mismatch(servers: dict[str, TritonServer]) -> None:
    report = await VALIDATOR.validate(
        MODEL, "2", [addr(servers["renamed"])], validation(), stable_pod=addr(servers["stable"])
    )
    assert not report.passed and report.failure is ValidationFailure.CONTRACT_MISMATCH
    assert "output 'score' missing; canary has 'risk'" in report.message


@pytest.mark.parametrize("mode", ["Strict", "Compatible"])
async def test_fp64_output_is_a_contract_mismatch(servers: dict[str, TritonServer], mode: str) -> None:
    report = await VALIDATOR.validate(
        MODEL, "2", [addr(servers["fp64"])], validation(mode), stable_pod=addr(servers["stable"])
    )
    assert report.failure is ValidationFailure.CONTRACT_MISMATCH
    assert "output 'score' datatype FP32 -> FP64" in report.message
    assert f"contract {mode} violated" in report.message


async def test_contract_off_lets_samples_judge(servers: dict[str, TritonServer]) -> None:
    check, stable = validation(ContractMode.OFF), addr(servers["stable"])
    report = await VALIDATOR.validate(MODEL, "2", [addr(servers["renamed"])], check, stable_pod=stable)
    assert report.failure is ValidationFailure.SAMPLE_FAILED
    assert "sample typical" in report.message and "score" in report.message


async def test_wrong_value_fails_the_sample(servers: dict[str, TritonServer]) -> None:
    expect = {"name": "score", "datatype": "FP32", "shape": [1, 1], "data": [0.9], "tolerance": 1e-3}
    report = await VALIDATOR.validate(MODEL, "2", [addr(servers["canary"])], validation(expect=expect))
    assert report.failure is ValidationFailure.SAMPLE_FAILED
    assert "output 'score'[0]" in report.message and "expected 0.9" in report.message


async def test_wrong_dtype_expectation_fails_the_sample(servers: dict[str, TritonServer]) -> None:
    expect = {"name": "score", "datatype": "FP32"}
    pods = [addr(servers["fp64"])]
    report = await VALIDATOR.validate(MODEL, "2", pods, validation(ContractMode.OFF, expect))
    assert report.failure is ValidationFailure.SAMPLE_FAILED
    assert "output 'score' datatype FP64, expected FP32" in report.message


async def test_server_rejected_sample_is_sample_failed(servers: dict[str, TritonServer]) -> None:
    bad = Validation.model_validate(
        {"samples": [{"inputs": [{"name": "y", "datatype": "FP32", "shape": [1, 4], "data": X}]}]}
    )
    report = await VALIDATOR.validate(MODEL, "2", [addr(servers["canary"])], bad)
    assert report.failure is ValidationFailure.SAMPLE_FAILED
    assert "sample 1" in report.message and "HTTP 400" in report.message


async def test_unpinned_version_is_not_ready(servers: dict[str, TritonServer]) -> None:
    report = await VALIDATOR.validate(MODEL, "3", [addr(servers["canary"])], validation())
    assert report.failure is ValidationFailure.NOT_READY
    assert "model 'fraud_scorer' version 3 is not READY" in report.message


async def test_version_that_fails_to_load_is_not_ready(servers: dict[str, TritonServer]) -> None:
    report = await VALIDATOR.validate(MODEL, "92", [addr(servers["broken"])], validation())
    assert report.failure is ValidationFailure.NOT_READY and "not READY" in report.message


async def test_unreachable_pod_is_not_ready_quickly() -> None:
    port = triton.free_port()
    t0 = time.monotonic()
    report = await VALIDATOR.validate(MODEL, "2", [f"127.0.0.1:{port}"], validation())
    elapsed = time.monotonic() - t0
    assert report.failure is ValidationFailure.NOT_READY
    assert f"pod 127.0.0.1:{port}: liveness check failed" in report.message
    assert elapsed < 3.5
    print(f"unreachable pod reported NotReady in {elapsed * 1000:.0f} ms")


async def test_unreachable_stable_is_not_ready(servers: dict[str, TritonServer]) -> None:
    port = triton.free_port()
    report = await VALIDATOR.validate(
        MODEL, "2", [addr(servers["canary"])], validation(), stable_pod=f"127.0.0.1:{port}"
    )
    assert report.failure is ValidationFailure.NOT_READY
    assert report.message.startswith("stable baseline unavailable")


async def test_no_pods_is_not_ready() -> None:
    report = await VALIDATOR.validate(MODEL, "2", [], validation())
    assert report.failure is ValidationFailure.NOT_READY and report.pods_checked == 0
