"""The comparator's math: decoding answers, judging pairs within tolerance, and the shift (PSI) of a window."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from modelship.comparator.judge import Reason, judge_pair
from modelship.comparator.shift import MIN_VALUES, psi_categorical, psi_numeric, summarize
from modelship.comparator.tensors import Tensor, TensorError, decode_response, encode_response
from modelship.comparator.window import Window
from modelship.domain.compare_spec import CompareSpec, OutputComparison


def tensor(values: list[float] | np.ndarray, datatype: str = "FP32", shape: tuple[int, ...] | None = None,
           name: str = "scores") -> Tensor:
    array = np.asarray(values)
    if datatype == "BYTES":
        array = np.asarray([v.encode() if isinstance(v, str) else v for v in values], dtype=object)
    return Tensor(name, datatype, shape if shape is not None else (array.size,), array)


def roundtrip(original: Tensor, binary: bool) -> Tensor:
    body, header_length = encode_response([original], binary=binary)
    return decode_response(body, header_length)[original.name]


# --- decoding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("FP32", [0.5, -1.25, 3.0]),
        ("FP16", [0.5, -1.25, 3.0]),
        ("BF16", [0.5, -1.25, 3.0]),
        ("FP64", [1e-300, 2.0, -7.5]),
        ("INT64", [-(2**62), 0, 2**62]),
        ("INT8", [-128, 0, 127]),
        ("UINT16", [0, 1, 65535]),
        ("BOOL", [True, False, True]),
        ("BYTES", ["cat", "", "dög"]),
    ],
)
def test_every_datatype_survives_json_and_the_binary_extension(datatype: str, values: list, binary: bool) -> None:
    original = tensor(values, datatype)
    decoded = roundtrip(original, binary)
    assert decoded.datatype == datatype and decoded.shape == (3,)
    assert decoded.values.tolist() == original.values.tolist()


def test_binary_answers_with_several_outputs_are_split_in_header_order() -> None:
    first = tensor([1.0, 2.0], "FP32", name="a")
    second = tensor(["x", "yz"], "BYTES", name="b")
    third = tensor([7], "INT64", name="c")
    body, header_length = encode_response([first, second, third], binary=True)
    decoded = decode_response(body, header_length)
    assert decoded["a"].values.tolist() == [1.0, 2.0]
    assert decoded["b"].values.tolist() == [b"x", b"yz"]
    assert decoded["c"].values.tolist() == [7]


def test_bf16_is_the_top_half_of_a_float32() -> None:
    raw = (np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    header = json.dumps({"outputs": [{"name": "o", "datatype": "BF16", "shape": [2],
                                      "parameters": {"binary_data_size": len(raw)}}]}).encode()
    assert decode_response(header + raw, len(header))["o"].values.tolist() == [1.5, -2.0]


@pytest.mark.parametrize(
    ("body", "header_length", "message"),
    [
        (b"not json", None, "not JSON"),
        (b'{"error": "model not ready"}', None, "no 'outputs'"),
        (b'{"outputs": [{"name": "o", "datatype": "FP32", "shape": [3], "data": [1, 2]}]}', None, "holds 2 values"),
        (b'{"outputs": [{"name": "o", "datatype": "FP32", "shape": [2]}]}', None, "no data"),
        (b'{"outputs": [{"name": "o", "datatype": "FP33", "shape": [1], "data": [1]}]}', None, "unknown datatype"),
        (b'{"outputs": [{"name": "o", "datatype": "FP32", "shape": [-1], "data": [1]}]}', None, "shape"),
    ],
)
def test_malformed_answers_raise_a_tensor_error_naming_the_problem(body: bytes, header_length: int | None,
                                                                  message: str) -> None:
    with pytest.raises(TensorError, match=message):
        decode_response(body, header_length)


def test_a_binary_tensor_longer_than_the_answer_is_refused() -> None:
    header = json.dumps({"outputs": [{"name": "o", "datatype": "FP32", "shape": [2],
                                      "parameters": {"binary_data_size": 8}}]}).encode()
    with pytest.raises(TensorError, match="does not fit"):
        decode_response(header + b"\x00\x00", len(header))
    with pytest.raises(TensorError, match="past the end"):
        decode_response(header, len(header) + 1)


def test_a_bytes_tensor_cut_inside_an_element_is_refused() -> None:
    header = json.dumps({"outputs": [{"name": "o", "datatype": "BYTES", "shape": [1],
                                      "parameters": {"binary_data_size": 6}}]}).encode()
    with pytest.raises(TensorError, match="ends inside"):
        decode_response(header + (5).to_bytes(4, "little") + b"ab", len(header))


# --- judging pairs -----------------------------------------------------------------------------------------


def judge(stable: Tensor, canary: Tensor, spec: CompareSpec | None = None):  # type: ignore[no-untyped-def]
    return judge_pair(spec or CompareSpec(), {stable.name: stable}, {canary.name: canary})


def test_floats_within_absolute_plus_relative_tolerance_agree() -> None:
    spec = CompareSpec(absolute=0.01, relative=0.1)
    assert judge(tensor([1.0, 100.0]), tensor([1.0 + 0.109, 100.0 - 10.0]), spec).agreed
    verdict = judge(tensor([1.0, 100.0]), tensor([1.0 + 0.111, 100.0]), spec)
    assert not verdict.agreed
    assert verdict.outputs[0].reason == Reason.VALUES
    assert "at element 0" in verdict.outputs[0].detail and "stable 1" in verdict.outputs[0].detail


def test_a_per_output_tolerance_overrides_the_spec_wide_one() -> None:
    spec = CompareSpec(outputs=[OutputComparison(name="scores", absolute=0.5)])
    assert judge(tensor([1.0]), tensor([1.4]), spec).agreed
    assert not judge(tensor([1.0]), tensor([1.6]), spec).agreed


def test_nan_agrees_only_with_nan_and_infinity_only_with_itself() -> None:
    assert judge(tensor([np.nan, np.inf, -np.inf]), tensor([np.nan, np.inf, -np.inf])).agreed
    assert not judge(tensor([np.nan]), tensor([0.0])).agreed
    assert not judge(tensor([0.0]), tensor([np.nan])).agreed
    assert not judge(tensor([np.inf]), tensor([-np.inf])).agreed
    assert not judge(tensor([1e30]), tensor([np.inf])).agreed


def test_fp16_answers_are_compared_at_their_own_precision() -> None:
    stable = tensor(np.array([0.1, 0.2], dtype=np.float16), "FP16")
    spec = CompareSpec(absolute=1e-3, relative=0.0)
    assert judge(stable, tensor(np.array([0.1, 0.2], dtype=np.float16), "FP16"), spec).agreed
    assert not judge(stable, tensor(np.array([0.1, 0.21], dtype=np.float16), "FP16"), spec).agreed


@pytest.mark.parametrize(
    ("datatype", "stable", "canary"),
    [
        ("INT64", [1, 2**62], [1, 2**62 + 1]),
        ("BOOL", [True, False], [True, True]),
        ("BYTES", ["cat", "dog"], ["cat", "dig"]),
    ],
)
def test_integers_bools_and_bytes_must_match_exactly(datatype: str, stable: list, canary: list) -> None:
    assert judge(tensor(stable, datatype), tensor(stable, datatype)).agreed
    verdict = judge(tensor(stable, datatype), tensor(canary, datatype), CompareSpec(absolute=10.0, relative=10.0))
    assert not verdict.agreed and verdict.outputs[0].detail == "1 of 2 values differ, first at element 1"


def test_a_different_shape_datatype_or_missing_output_is_a_disagreement_with_its_reason() -> None:
    shape = judge(tensor([1.0, 2.0]), tensor([1.0, 2.0, 3.0]))
    assert (shape.outputs[0].reason, shape.outputs[0].detail) == (Reason.SHAPE, "shape [3] (stable [2])")
    dtype = judge(tensor([1.0]), tensor([1.0], "FP16"))
    assert (dtype.outputs[0].reason, dtype.outputs[0].detail) == (Reason.DATATYPE, "datatype FP16 (stable FP32)")
    missing = judge_pair(CompareSpec(), {"a": tensor([1.0], name="a")}, {})
    assert not missing.agreed and missing.outputs[0].reason == Reason.MISSING
    named = judge_pair(CompareSpec(outputs=[OutputComparison(name="b")]), {"a": tensor([1.0], name="a")},
                       {"a": tensor([9.0], name="a")})
    assert not named.agreed and "stable answer has no output 'b'" in named.outputs[0].detail


def test_argmax_mode_compares_the_top_class_of_each_row() -> None:
    spec = CompareSpec(outputs=[OutputComparison(name="scores", mode="Argmax")])
    stable = tensor([0.1, 0.7, 0.2, 0.5, 0.4, 0.1], shape=(2, 3))
    assert judge(stable, tensor([0.0, 0.4, 0.3, 0.9, 0.0, 0.1], shape=(2, 3)), spec).agreed
    verdict = judge(stable, tensor([0.1, 0.7, 0.2, 0.1, 0.4, 0.5], shape=(2, 3)), spec)
    assert not verdict.agreed and verdict.outputs[0].reason == Reason.CLASSES
    assert verdict.outputs[0].detail == "top class differ in 1 of 2 rows; row 1: [2] (stable [0])"


def test_topk_mode_compares_the_set_of_the_k_best_classes() -> None:
    spec = CompareSpec(outputs=[OutputComparison(name="scores", mode="TopK", k=2)])
    stable = tensor([0.5, 0.3, 0.1, 0.1])
    assert judge(stable, tensor([0.3, 0.5, 0.1, 0.1]), spec).agreed  # same two classes, other order
    assert not judge(stable, tensor([0.5, 0.1, 0.3, 0.1]), spec).agreed


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1, max_size=50))
def test_any_answer_agrees_with_itself(values: list[float]) -> None:
    assert judge(tensor(values), tensor(values)).agreed


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0.0, 1.0), st.floats(0.0, 0.5))
def test_a_move_within_tolerance_always_agrees(values: list[float], absolute: float, relative: float) -> None:
    stable = np.asarray(values, dtype=np.float64)
    canary = stable + (absolute + relative * np.abs(stable)) * 0.5  # half the limit: rounding stays inside it
    spec = CompareSpec(absolute=absolute, relative=relative)
    assert judge(tensor(stable, "FP64"), tensor(canary, "FP64"), spec).agreed


# --- shift -------------------------------------------------------------------------------------------------


def test_the_same_distribution_has_a_shift_near_zero_and_a_moved_one_a_large_shift() -> None:
    generator = np.random.default_rng(7)
    stable = generator.normal(0.6, 0.1, 5000)
    assert psi_numeric(stable, generator.normal(0.6, 0.1, 5000)) < 0.02  # type: ignore[operator]
    assert psi_numeric(stable, generator.normal(0.62, 0.1, 5000)) < 0.1  # type: ignore[operator]  # retrained
    assert psi_numeric(stable, generator.normal(0.95, 0.05, 5000)) > 2.0  # type: ignore[operator]


def test_a_constant_canary_shifts_far_from_a_varied_stable_and_a_constant_stable_still_has_bins() -> None:
    generator = np.random.default_rng(3)
    assert psi_numeric(generator.uniform(0, 1, 500), np.full(500, 0.5)) > 1.0  # type: ignore[operator]
    assert psi_numeric(np.full(500, 0.5), np.full(500, 0.5)) == pytest.approx(0.0)
    assert psi_numeric(np.full(500, 0.5), generator.uniform(0.6, 1, 500)) > 1.0  # type: ignore[operator]


def test_tiny_and_empty_windows_have_no_shift_rather_than_a_noisy_one() -> None:
    few = np.linspace(0, 1, MIN_VALUES - 1)
    enough = np.linspace(0, 1, MIN_VALUES)
    assert psi_numeric(np.empty(0), np.empty(0)) is None
    assert psi_numeric(few, enough) is None and psi_numeric(enough, few) is None
    assert psi_numeric(enough, enough) == pytest.approx(0.0)
    assert psi_numeric(np.full(100, np.nan), enough) is None  # NaN and infinities are not values to bin
    assert psi_categorical([], []) is None


def test_class_shift_counts_each_predicted_class_as_a_bin() -> None:
    assert psi_categorical([0, 1, 2] * 20, [2, 1, 0] * 20) == pytest.approx(0.0)
    assert psi_categorical([0, 1, 2] * 20, [1] * 60) > 1.0  # type: ignore[operator]


@given(st.lists(st.floats(-1e3, 1e3), min_size=MIN_VALUES, max_size=200),
       st.lists(st.floats(-1e3, 1e3), min_size=MIN_VALUES, max_size=200))
def test_shift_is_never_negative_nor_infinite(stable: list[float], canary: list[float]) -> None:
    value = psi_numeric(np.asarray(stable), np.asarray(canary))
    assert value is not None and 0.0 <= value < float("inf")


def test_summaries_are_mean_and_percentiles_of_finite_values() -> None:
    stats = summarize(np.array([*range(101), np.nan], dtype=float))
    assert stats is not None and (stats.count, stats.mean, stats.p5, stats.p50, stats.p95) == (101, 50, 5, 50, 95)
    assert summarize(np.array([np.inf])) is None


# --- the window --------------------------------------------------------------------------------------------


def test_the_window_forgets_old_answers_and_stays_bounded() -> None:
    now = [0.0]
    window = Window(seconds=10, max_values=100, clock=lambda: now[0])
    window.add("o", "stable", "values", np.arange(60.0))
    now[0] = 5.0
    window.add("o", "stable", "values", np.arange(60.0, 120.0))
    assert window.values("o", "stable", "values").tolist() == list(np.arange(60.0, 120.0))  # oldest dropped
    now[0] = 16.0
    assert window.values("o", "stable", "values").size == 0
    window.add("o", "canary", "values", np.arange(500.0))
    assert window.values("o", "canary", "values").tolist() == list(np.arange(400.0, 500.0))
    assert window.size() == 100 and window.outputs() == ["o"]
