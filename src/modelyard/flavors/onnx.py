"""ONNX models run with onnxruntime, and scikit-learn models converted to ONNX.

Conversion (``prefer_onnx``) is kept only when the converted model gives the same predictions on
the input example and is faster there; either way the choice and the timings are recorded in
``meta.extra["onnx"]`` so nobody has to guess which runtime answered.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from modelyard.errors import FlavorError
from modelyard.flavors.meta import ColumnSpec, Signature

MODEL_FILE = "model.onnx"

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(int16)": "int16",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
    "tensor(string)": "str",
}


def is_onnx_model(model: Any) -> bool:
    return isinstance(model, bytes | bytearray) or type(model).__name__ == "ModelProto"


def model_bytes(model: Any) -> bytes:
    if isinstance(model, bytes | bytearray):
        return bytes(model)
    return canonical_bytes(model)


def canonical_bytes(proto: Any) -> bytes:
    """A ``ModelProto``'s bytes with its opset imports sorted by domain: skl2onnx lists them in
    set order, which follows ``PYTHONHASHSEED``, so the same model gave different files."""
    ordered = sorted(proto.opset_import, key=lambda o: (o.domain, o.version))
    del proto.opset_import[:]
    proto.opset_import.extend(ordered)
    return bytes(proto.SerializeToString())


def session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    # One thread per worker: the server scales with workers and batching, not intra-op threads.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise FlavorError(f"onnxruntime cannot load {path}: {exc}") from exc


def _spec(arg: Any) -> ColumnSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise FlavorError(f"ONNX input {arg.name!r} has unsupported type {arg.type}")
    shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape)
    return ColumnSpec(name=arg.name, dtype=dtype, shape=(-1, *shape[1:]) if shape else (-1,))


def signature_of(sess: Any) -> Signature:
    return Signature(
        inputs=tuple(_spec(a) for a in sess.get_inputs()),
        outputs=tuple(_spec(a) for a in sess.get_outputs()),
        kind="tensor",
    )


class OnnxPredictor:
    """Feeds a batch to an onnxruntime session in the shapes and dtypes its graph declares."""

    def __init__(self, sess: Any, *, first_output_only: bool = False) -> None:
        self._sess = sess
        self._inputs = [
            (a.name, _ORT_TYPES.get(a.type, "float32"), len(a.shape)) for a in sess.get_inputs()
        ]
        self._outputs = [o.name for o in sess.get_outputs()]
        self._first_only = first_output_only

    def _cast(self, values: Any, dtype: str, rank: int) -> np.ndarray[Any, Any]:
        arr = np.asarray(values)
        arr = arr.astype(object) if dtype == "str" else arr.astype(dtype, copy=False)
        if arr.ndim == 1 and rank == 2:
            arr = arr.reshape(-1, 1)
        return arr

    def __call__(self, batch: Any) -> Any:
        if isinstance(batch, dict):
            feed = {
                name: self._cast(batch[name], dtype, rank) for name, dtype, rank in self._inputs
            }
        elif len(self._inputs) == 1:
            name, dtype, rank = self._inputs[0]
            feed = {name: self._cast(batch, dtype, rank)}
        else:
            raise FlavorError(f"this ONNX model needs inputs {[i[0] for i in self._inputs]}")
        results = self._sess.run(None, feed)
        if self._first_only or len(results) == 1:
            return results[0]
        return dict(zip(self._outputs, results, strict=True))


def convert_sklearn(
    model: Any, example: Any, predict_sklearn: Any
) -> tuple[bytes | None, dict[str, Any]]:
    """Try skl2onnx; return (onnx bytes or None, the recorded decision)."""
    try:
        from skl2onnx import to_onnx

        onx = to_onnx(model, example, options={"zipmap": False}, target_opset=None)
        data = canonical_bytes(onx)
    except Exception as exc:  # skl2onnx raises many types for unsupported estimators
        return None, {"chosen": False, "reason": f"conversion failed: {exc}"}
    import onnxruntime as ort

    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    predictor = OnnxPredictor(sess, first_output_only=True)
    batch = _as_feed(example)
    try:
        got = np.asarray(predictor(batch)).ravel()
    except Exception as exc:
        return None, {"chosen": False, "reason": f"onnxruntime failed on the example: {exc}"}
    want = np.asarray(predict_sklearn(example)).ravel()
    if got.shape != want.shape or not (
        np.array_equal(got, want)
        if want.dtype.kind not in "fc"
        else np.allclose(got, want, rtol=1e-4, atol=1e-5)
    ):
        return None, {"chosen": False, "reason": "predictions differ from scikit-learn"}
    t_onnx = _best_time(lambda: predictor(batch))
    t_sk = _best_time(lambda: predict_sklearn(example))
    decision = {"onnx_seconds": t_onnx, "sklearn_seconds": t_sk}
    if t_onnx >= t_sk:
        return None, {"chosen": False, "reason": "not faster than scikit-learn", **decision}
    return data, {"chosen": True, "reason": "same predictions, faster", **decision}


def _as_feed(example: Any) -> Any:
    if type(example).__name__ == "DataFrame":
        return {str(c): example[c].to_numpy() for c in example.columns}
    return np.asarray(example)


def _best_time(fn: Any, repeat: int = 20) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best
