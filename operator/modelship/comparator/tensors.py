"""KServe v2 (Triton HTTP) inference answers, decoded into numpy arrays: JSON and the binary-tensor extension.

The comparator never decodes requests (it forwards their bytes unchanged); it decodes the two answers. With the
binary extension the body is a JSON header of `Inference-Header-Content-Length` bytes followed by the raw tensors
of every output whose `parameters.binary_data_size` is set, in the order the header lists them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

HEADER_LENGTH = "Inference-Header-Content-Length"

NUMERIC_DTYPES: Mapping[str, str] = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
FLOAT_DTYPES = frozenset({"FP16", "BF16", "FP32", "FP64"})


class TensorError(ValueError):
    """An answer that is not a well-formed KServe v2 inference response."""


@dataclass(frozen=True)
class Tensor:
    """One output: its KServe datatype, shape and values (numeric array, or an object array of bytes for BYTES)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: npt.NDArray[Any]

    @property
    def is_float(self) -> bool:
        return self.datatype in FLOAT_DTYPES

    @property
    def is_numeric(self) -> bool:
        return self.datatype != "BYTES"

    def as_float(self) -> npt.NDArray[np.float64]:
        """Values as float64, for tolerances, summaries and shift (not for BYTES)."""
        return self.values.astype(np.float64, copy=False)


def _bytes_elements(raw: bytes, count: int) -> npt.NDArray[Any]:
    """BYTES in the binary extension: each element is a 4-byte little-endian length, then that many bytes."""
    out: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TensorError("BYTES tensor ends inside an element length")
        length = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        if offset + length > len(raw):
            raise TensorError("BYTES tensor ends inside an element")
        out.append(raw[offset : offset + length])
        offset += length
    if len(out) != count:
        raise TensorError(f"BYTES tensor holds {len(out)} elements, its shape says {count}")
    array = np.empty(len(out), dtype=object)
    array[:] = out
    return array


def _from_binary(datatype: str, raw: bytes, count: int) -> npt.NDArray[Any]:
    if datatype == "BYTES":
        return _bytes_elements(raw, count)
    if datatype == "BF16":  # bfloat16 is the top half of a float32
        if len(raw) != 2 * count:
            raise TensorError(f"BF16 tensor of {len(raw)} bytes, its shape says {count} elements")
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
        return (halves << 16).view(np.float32)
    code = NUMERIC_DTYPES.get(datatype)
    if code is None:
        raise TensorError(f"unknown datatype {datatype!r}")
    dtype = np.dtype(code)
    if len(raw) != dtype.itemsize * count:
        raise TensorError(f"{datatype} tensor of {len(raw)} bytes, its shape says {count} elements")
    return np.frombuffer(raw, dtype=dtype)


def _from_json(datatype: str, data: Any, count: int) -> npt.NDArray[Any]:
    flat = np.asarray(data, dtype=object).reshape(-1) if isinstance(data, list) else np.asarray([data], dtype=object)
    if flat.size != count:
        raise TensorError(f"tensor holds {flat.size} values, its shape says {count}")
    if datatype == "BYTES":
        array = np.empty(flat.size, dtype=object)
        array[:] = [v.encode() if isinstance(v, str) else bytes(v) for v in flat]
        return array
    if datatype == "BF16":
        return flat.astype(np.float32)
    code = NUMERIC_DTYPES.get(datatype)
    if code is None:
        raise TensorError(f"unknown datatype {datatype!r}")
    try:
        return flat.astype(np.dtype(code))
    except (TypeError, ValueError) as exc:
        raise TensorError(f"{datatype} tensor with values that are not numbers: {exc}") from None


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(d, int) and d >= 0 for d in value):
        raise TensorError(f"output {name!r}: shape {value!r} is not a list of non-negative integers")
    return tuple(value)


def decode_response(body: bytes, header_length: int | None = None) -> dict[str, Tensor]:
    """The outputs of one inference answer, by name. `header_length` is the binary extension's header size."""
    header_bytes = body if header_length is None else body[:header_length]
    if header_length is not None and header_length > len(body):
        raise TensorError(f"{HEADER_LENGTH} {header_length} is past the end of a {len(body)}-byte answer")
    try:
        header = json.loads(header_bytes)
    except ValueError as exc:
        raise TensorError(f"answer is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("outputs"), list):
        raise TensorError("answer has no 'outputs' list")
    offset = 0 if header_length is None else header_length
    tensors: dict[str, Tensor] = {}
    for output in header["outputs"]:
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise TensorError("an output has no name")
        name, datatype = output["name"], str(output.get("datatype", ""))
        shape = _shape(output.get("shape"), name)
        count = int(np.prod(shape)) if shape else 1
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            if header_length is None or not isinstance(size, int) or offset + size > len(body):
                raise TensorError(f"output {name!r}: binary_data_size {size!r} does not fit the answer")
            values = _from_binary(datatype, body[offset : offset + size], count)
            offset += size
        elif "data" in output:
            values = _from_json(datatype, output["data"], count)
        else:
            raise TensorError(f"output {name!r} carries no data")
        tensors[name] = Tensor(name, datatype, shape, values)
    return tensors


def encode_response(outputs: list[Tensor], binary: bool = False) -> tuple[bytes, int | None]:
    """An inference answer (for tests and the bench's stand-in servers): body and binary header length."""
    header: dict[str, Any] = {"outputs": []}
    blobs: list[bytes] = []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        if binary:
            blob = _to_binary(tensor)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = [v.decode() for v in tensor.values] if tensor.datatype == "BYTES" else (
                tensor.values.reshape(-1).tolist())
        header["outputs"].append(entry)
    head = json.dumps(header).encode()
    return (head + b"".join(blobs), len(head)) if binary else (head, None)


def _to_binary(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return b"".join(len(v).to_bytes(4, "little") + v for v in tensor.values)
    if tensor.datatype == "BF16":
        return (np.asarray(tensor.values, dtype=np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
    return np.asarray(tensor.values, dtype=NUMERIC_DTYPES[tensor.datatype]).tobytes()
