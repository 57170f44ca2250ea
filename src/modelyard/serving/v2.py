"""The Open Inference Protocol (V2) pieces that the HTTP and the gRPC endpoints share.

- The binary tensor data extension: a tensor's values as raw little-endian bytes in row-major
  order, one element after the other; BOOL is one byte (0 or 1) and BYTES is each element's
  length as 4 little-endian bytes followed by the element. Over HTTP the JSON header comes first
  and its length is in the ``Inference-Header-Content-Length`` header; over gRPC the bytes are
  ``raw_input_contents`` / ``raw_output_contents``.
- Requested outputs: only those are answered; an unknown name is refused before predicting.
- :func:`infer`: decode, predict (through the micro-batcher), pick the outputs — one path, so
  both transports validate, batch and log alike.

Framing errors raise :class:`~modelyard.errors.InvalidRequest` (HTTP 400, gRPC
``INVALID_ARGUMENT``); values that do not fit the signature raise
:class:`~modelyard.errors.InvalidInput` from the decoder, as JSON requests do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from modelyard.errors import FlavorError, InvalidInput, InvalidRequest
from modelyard.flavors.meta import V2_DATATYPES, Signature

if TYPE_CHECKING:
    from modelyard.serving.app import ModelServer
    from modelyard.serving.decode import Batch

Array = np.ndarray[Any, Any]

#: What ``/v2`` (and gRPC ``ServerMetadata``) lists: Triton's name for the binary extension.
EXTENSIONS: Final = ("binary_tensor_data",)

#: numpy dtypes of the fixed-size datatypes, little-endian as the extension specifies.
RAW_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "BOOL": np.dtype("?"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_DATATYPES = ", ".join([*RAW_DTYPES, "BYTES"])


def datatype_of(arr: Array) -> str:
    """The V2 datatype of an output array: numbers and booleans by dtype, anything else BYTES."""
    return V2_DATATYPES.get(arr.dtype.name, "BYTES") if arr.dtype.kind in "biuf" else "BYTES"


def decode_raw(raw: bytes | memoryview, datatype: str, shape: Sequence[int], name: str) -> Array:
    """The array that ``raw`` holds, refusing a size that does not match ``shape`` exactly."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return _decode_bytes(memoryview(raw), count, shape, name)
    dtype = RAW_DTYPES.get(datatype)
    if dtype is None:
        raise InvalidRequest(
            f"input {name!r}: datatype {datatype!r} is not supported (one of {_DATATYPES})"
        )
    if len(raw) != count * dtype.itemsize:
        raise InvalidRequest(
            f"input {name!r}: shape {list(shape)} of {datatype} needs "
            f"{count * dtype.itemsize} bytes, got {len(raw)}"
        )
    if datatype == "BOOL":
        as_bytes = np.frombuffer(raw, dtype=np.uint8)
        if as_bytes.size and as_bytes.max() > 1:
            raise InvalidRequest(f"input {name!r}: a BOOL byte must be 0 or 1")
    # A copy: frombuffer's view is read-only and would pin the whole request body.
    return (
        np.frombuffer(raw, dtype=dtype)
        .astype(dtype.newbyteorder("="), copy=True)
        .reshape(tuple(shape))
    )


def _decode_bytes(view: memoryview, count: int, shape: Sequence[int], name: str) -> Array:
    items: list[str] = []
    pos, end = 0, len(view)
    while pos < end:
        if len(items) == count:
            raise InvalidRequest(
                f"input {name!r}: {end - pos} bytes after the {count} BYTES elements of "
                f"shape {list(shape)}"
            )
        if pos + 4 > end:
            raise InvalidRequest(f"input {name!r}: BYTES element {len(items)} is cut short")
        size = int.from_bytes(view[pos : pos + 4], "little")
        pos += 4
        if pos + size > end:
            raise InvalidRequest(f"input {name!r}: BYTES element {len(items)} is cut short")
        try:
            items.append(str(view[pos : pos + size], "utf-8"))
        except UnicodeDecodeError:
            raise InvalidInput(
                f"input {name!r}: BYTES element {len(items)} is not UTF-8 text", name
            ) from None
        pos += size
    if len(items) != count:
        raise InvalidRequest(
            f"input {name!r}: shape {list(shape)} needs {count} BYTES elements, got {len(items)}"
        )
    arr = np.empty(count, dtype=object)
    arr[:] = items
    return arr.reshape(tuple(shape))


def encode_raw(arr: Array) -> bytes:
    """``arr`` in the extension's layout (see the module docstring)."""
    if datatype_of(arr) != "BYTES":
        return np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in arr.ravel().tolist():
        data = value if isinstance(value, bytes) else str(value).encode("utf-8")
        parts.append(len(data).to_bytes(4, "little"))
        parts.append(data)
    return b"".join(parts)


def attach_binary(body: dict[str, Any], binary: memoryview) -> None:
    """Replace the ``data`` of each input whose ``parameters.binary_data_size`` says its values
    are in ``binary`` (the bytes after the JSON header, inputs in order) with the decoded array;
    every byte must belong to exactly one input."""
    inputs = body.get("inputs")
    pos = 0
    for i, item in enumerate(inputs if isinstance(inputs, list) else []):
        if not isinstance(item, dict):
            continue  # the decoder names this error
        size = _parameters(item, f"inputs[{i}]").get("binary_data_size")
        if size is None:
            continue
        name = item.get("name")
        label = name if isinstance(name, str) else f"inputs[{i}]"
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidRequest(f"input {label!r}: binary_data_size must be a byte count")
        if "data" in item:
            raise InvalidRequest(f"input {label!r}: has both data and binary_data_size")
        if pos + size > len(binary):
            raise InvalidRequest(
                f"input {label!r}: binary_data_size {size} runs past the end of the body "
                f"({len(binary) - pos} bytes left)"
            )
        shape, datatype = item.get("shape"), item.get("datatype")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            raise InvalidInput(f"input {label!r}: shape must be a list of sizes", label)
        if not isinstance(datatype, str):
            raise InvalidInput(f"input {label!r}: datatype must be a string", label)
        item["data"] = decode_raw(binary[pos : pos + size], datatype, shape, label)
        pos += size
    if pos != len(binary):
        raise InvalidRequest(
            f"{len(binary) - pos} bytes after the JSON header belong to no input "
            "(each binary input needs parameters.binary_data_size)"
        )


def _parameters(item: dict[str, Any], where: str) -> dict[str, Any]:
    params = item.get("parameters")
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidRequest(f"{where}.parameters must be an object")
    if params.get("shared_memory_region") is not None:
        raise InvalidRequest(f"{where}: shared memory is not supported; send the data")
    return params


@dataclass(frozen=True)
class Output:
    """One requested output: ``binary`` None means the request's default."""

    name: str
    binary: bool | None = None


def _unknown_output(name: str, known: Sequence[str]) -> InvalidRequest:
    return InvalidRequest(
        f"unknown output {name!r}; this model answers {', '.join(map(repr, known))}"
    )


def requested_outputs(body: dict[str, Any], sig: Signature) -> list[Output] | None:
    """The outputs the request names (None: all of them), each checked against the model's
    declared outputs — before predicting. (A model whose signature declares no outputs is
    checked against what it returns, in :func:`output_tensors`.)"""
    wanted = body.get("outputs")
    if wanted is None or wanted == []:
        return None
    if not isinstance(wanted, list):
        raise InvalidRequest("'outputs' must be a list of {'name': ...}")
    known = [s.name for s in sig.outputs]
    out: list[Output] = []
    for i, item in enumerate(wanted):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise InvalidRequest(f"outputs[{i}].name must be a string")
        if known and name not in known:
            raise _unknown_output(name, known)
        if any(o.name == name for o in out):
            raise InvalidRequest(f"output {name!r} requested twice")
        params = _parameters(item, f"outputs[{i}]")
        if params.get("classification"):
            raise InvalidRequest(f"output {name!r}: the classification extension is not supported")
        binary = params.get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise InvalidRequest(f"output {name!r}: binary_data must be true or false")
        out.append(Output(name, binary))
    return out


def binary_default(body: dict[str, Any]) -> bool:
    """The request's ``parameters.binary_data_output`` (False when absent)."""
    value = _parameters(body, "request").get("binary_data_output", False)
    if not isinstance(value, bool):
        raise InvalidRequest("parameters.binary_data_output must be true or false")
    return value


def output_tensors(
    output: Any, sig: Signature, wanted: list[Output] | None
) -> list[tuple[Output, Array]]:
    """The model's output as named arrays, only the requested ones, in the requested order."""
    if isinstance(output, dict):
        named = {str(k): np.asarray(v) for k, v in output.items()}
    else:
        named = {sig.outputs[0].name if sig.outputs else "predict": np.asarray(output)}
    if wanted is None:
        return [(Output(name), arr) for name, arr in named.items()]
    missing = [o.name for o in wanted if o.name not in named]
    if missing and sig.outputs:
        raise FlavorError(f"the model returned no output {missing[0]!r}, which it declares")
    if missing:
        raise _unknown_output(missing[0], list(named))
    return [(o, named[o.name]) for o in wanted]


@dataclass(frozen=True)
class Inference:
    """What one V2 request produced: the checked batch and raw output (for the prediction log)
    and the tensors to answer with."""

    batch: Batch
    output: Any
    tensors: list[tuple[Output, Array]]


async def infer(server: ModelServer, body: Any) -> Inference:
    """Check ``body`` (a V2 request whose binary inputs are already attached), predict through
    the server's batcher and pick the requested outputs."""
    assert server.decoder is not None
    assert server._predict is not None
    sig = server.decoder.sig
    wanted = requested_outputs(body, sig) if isinstance(body, dict) else None
    batch = server.decoder.v2(body)
    output = await server._predict(batch)
    return Inference(batch, output, output_tensors(output, sig, wanted))
