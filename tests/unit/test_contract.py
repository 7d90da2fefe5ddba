"""Contract and sample-output comparison (pure): table-driven cases plus properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelship.adapters.contract import Signature, TensorSpec, compare_output, compare_signatures
from modelship.adapters.triton import endpoint
from modelship.domain.api import ContractMode, ExpectedOutput

X = TensorSpec("x", "FP32", (-1, 4))
SCORE = TensorSpec("score", "FP32", (-1, 1))
STABLE = Signature((X,), (SCORE,))


def sig(inputs: tuple[TensorSpec, ...] = (X,), outputs: tuple[TensorSpec, ...] = (SCORE,)) -> Signature:
    return Signature(inputs, outputs)


CASES = [
    # (name, canary, mode, expected problems)
    ("identical", STABLE, "Strict", []),
    ("dtype", sig(outputs=(TensorSpec("score", "FP64", (-1, 1)),)), "Strict",
     ["output 'score' datatype FP32 -> FP64"]),
    ("dtype-compatible", sig(outputs=(TensorSpec("score", "FP64", (-1, 1)),)), "Compatible",
     ["output 'score' datatype FP32 -> FP64"]),
    ("renamed", sig(outputs=(TensorSpec("risk", "FP32", (-1, 1)),)), "Strict",
     ["output 'score' missing; canary has 'risk'"]),
    ("renamed-compatible", sig(outputs=(TensorSpec("risk", "FP32", (-1, 1)),)), "Compatible",
     ["output 'score' missing; canary has 'risk'"]),
    ("removed", sig(outputs=()), "Compatible", ["output 'score' missing; canary has no other output"]),
    ("added-output-strict", sig(outputs=(SCORE, TensorSpec("risk", "FP32", (-1, 1)))), "Strict",
     ["output 'risk' added"]),
    ("added-output-compatible", sig(outputs=(SCORE, TensorSpec("risk", "FP32", (-1, 1)))), "Compatible", []),
    ("added-input-compatible", sig(inputs=(X, TensorSpec("y", "INT64", (-1,)))), "Compatible",
     ["input 'y' added (clients do not send it)"]),
    ("widened-strict", sig(inputs=(TensorSpec("x", "FP32", (-1, -1)),)), "Strict",
     ["input 'x' shape [-1, 4] -> [-1, -1]"]),
    ("widened-compatible", sig(inputs=(TensorSpec("x", "FP32", (-1, -1)),)), "Compatible", []),
    ("narrowed-compatible", sig(outputs=(TensorSpec("score", "FP32", (8, 1)),)), "Compatible",
     ["output 'score' shape [-1, 1] -> [8, 1]"]),
    ("resized", sig(inputs=(TensorSpec("x", "FP32", (-1, 8)),)), "Compatible",
     ["input 'x' shape [-1, 4] -> [-1, 8]"]),
    ("rank", sig(outputs=(TensorSpec("score", "FP32", (-1,)),)), "Compatible",
     ["output 'score' shape [-1, 1] -> [-1]"]),
    ("off", sig(inputs=(), outputs=()), "Off", []),
    ("two-problems",
     sig(inputs=(TensorSpec("x", "FP16", (-1, 4)),), outputs=(TensorSpec("p", "FP32", (1,)),)),
     "Strict", ["input 'x' datatype FP32 -> FP16", "output 'score' missing; canary has 'p'"]),
]


@pytest.mark.parametrize(("name", "canary", "mode", "expected"), CASES, ids=[c[0] for c in CASES])
def test_contract(name: str, canary: Signature, mode: str, expected: list[str]) -> None:
    assert compare_signatures(STABLE, canary, mode) == expected


def test_from_metadata() -> None:
    meta = {
        "name": "fraud_scorer", "versions": ["7"], "platform": "python",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1, 1]}],
    }
    assert Signature.from_metadata(meta) == STABLE
    assert Signature.from_metadata({}) == Signature((), ())


DTYPES = st.sampled_from(["BOOL", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES"])
TENSORS = st.lists(
    st.builds(TensorSpec, st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), DTYPES,
              st.lists(st.integers(-1, 64), max_size=4).map(tuple)),
    max_size=5, unique_by=lambda t: t.name,
).map(tuple)
SIGNATURES = st.builds(Signature, TENSORS, TENSORS)


@given(SIGNATURES, st.sampled_from(list(ContractMode)))
def test_identical_metadata_is_always_compatible(signature: Signature, mode: ContractMode) -> None:
    assert compare_signatures(signature, signature, mode) == []


@given(SIGNATURES, SIGNATURES)
def test_strict_passing_implies_compatible_passing(stable: Signature, canary: Signature) -> None:
    if not compare_signatures(stable, canary, ContractMode.STRICT):
        assert not compare_signatures(stable, canary, ContractMode.COMPATIBLE)


@given(SIGNATURES, SIGNATURES)
def test_every_problem_names_a_tensor(stable: Signature, canary: Signature) -> None:
    for problem in compare_signatures(stable, canary, ContractMode.STRICT):
        assert problem.startswith(("input", "output")) and "'" in problem


# --- sample outputs ----------------------------------------------------------------------------------------


def out(**kw: object) -> ExpectedOutput:
    return ExpectedOutput.model_validate({"name": "score", **kw})


@pytest.mark.parametrize(
    ("expected", "datatype", "shape", "values", "problem"),
    [
        (out(), "FP32", [1, 1], [0.5], None),
        (out(datatype="FP32", shape=[1, 1], data=[0.55775]), "FP32", [1, 1], [0.557749], None),
        (out(), None, None, None, "output 'score' missing from the response"),
        (out(datatype="FP32"), "FP64", [1, 1], [0.5], "output 'score' datatype FP64, expected FP32"),
        (out(shape=[1, 1]), "FP32", [1, 2], [0.5, 0.5], "output 'score' shape [1, 2], expected [1, 1]"),
        (out(data=[0.9], tolerance=0.01), "FP32", [1], [0.5],
         "output 'score'[0] = 0.5, expected 0.9 (tolerance 0.01)"),
        (out(data=[1, 2]), "INT64", [1], [1], "output 'score' has 1 values, expected 2"),
        (out(data=["yes"]), "BYTES", [1], [b"yes"], None),
        (out(data=["yes"]), "BYTES", [1], [b"no"],
         "output 'score'[0] = 'no', expected 'yes' (tolerance 0.0001)"),
        (out(data=[True]), "BOOL", [1], [True], None),
        (out(data=[float("nan")]), "FP32", [1], [float("nan")], None),
    ],
)
def test_compare_output(
    expected: ExpectedOutput, datatype: str | None, shape: list[int] | None, values: list[object] | None,
    problem: str | None,
) -> None:
    assert compare_output(expected, datatype, shape, values) == problem


@pytest.mark.parametrize(
    ("address", "url"),
    [("10.0.0.5", "10.0.0.5:8000"), ("10.0.0.5:9000", "10.0.0.5:9000"), ("fd00::5", "[fd00::5]:8000"),
     ("[fd00::5]", "[fd00::5]:8000"), ("[fd00::5]:9000", "[fd00::5]:9000")],
)
def test_endpoint(address: str, url: str) -> None:
    assert endpoint(address, 8000) == url
