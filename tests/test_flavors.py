from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import FlavorError, UnsafeModel
from modelyard.flavors import (
    META_FILE,
    ModelMeta,
    Signature,
    infer_signature,
    load_model,
    read_meta,
    save_model,
)
from modelyard.flavors import sklearn as sk

sys.path.insert(0, str(Path(__file__).parent))
from _models import AddOne, churn_pipeline


class Custom:
    """Not in the allow-list: lives in the test module."""

    def fit(self, x: object, y: object = None) -> Custom:
        return self

    def transform(self, x: object) -> object:
        return x


def test_sklearn_pipeline_roundtrip_with_dataframe_signature(tmp_path: Path) -> None:
    model, frame = churn_pipeline()
    meta = save_model(model, tmp_path / "m", input_example=frame[:5])
    assert meta.flavor == "sklearn"
    assert meta.signature.kind == "columns"
    assert [(c.name, c.dtype) for c in meta.signature.inputs] == [
        ("a", "float64"),
        ("b", "float64"),
        ("c", "float64"),
        ("city", "str"),
    ]
    assert meta.signature.outputs[0].dtype == "int64"
    assert {"scikit-learn", "skops", "numpy", "pandas"} <= set(meta.requirements)
    import sklearn

    assert meta.requirements["scikit-learn"] == sklearn.__version__
    assert read_meta(tmp_path / "m") == meta
    loaded = load_model(tmp_path / "m")
    cols = {c: frame[c].to_numpy()[:10] for c in frame.columns}
    assert loaded.predict(cols).tolist() == model.predict(frame[:10]).tolist()
    assert loaded.predict(frame[:4]).tolist() == model.predict(frame[:4]).tolist()


def test_meta_json_roundtrip(tmp_path: Path) -> None:
    model, frame = churn_pipeline()
    meta = save_model(model, tmp_path / "m", input_example=frame[:3])
    data = json.loads((tmp_path / "m" / META_FILE).read_text())
    assert ModelMeta.from_dict(data) == meta
    assert Signature.from_dict(meta.signature.to_dict()) == meta.signature


def test_ndarray_signature_is_tensor_with_batch_dim() -> None:
    sig = infer_signature(np.zeros((4, 3), dtype=np.float32), np.zeros(4, dtype=np.int64))
    assert sig.kind == "tensor"
    assert sig.inputs[0].shape == (-1, 3)
    assert sig.inputs[0].dtype == "float32"
    assert sig.outputs[0].shape == (-1,)


def test_nan_in_example_marks_column_allow_nan() -> None:
    import pandas as pd

    sig = infer_signature(pd.DataFrame({"a": [1.0, np.nan], "b": [1.0, 2.0]}))
    assert [c.allow_nan for c in sig.inputs] == [True, False]


def test_custom_type_is_refused_at_save_and_load(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x = np.random.default_rng(0).normal(size=(20, 2))
    model = make_pipeline(Custom(), LogisticRegression()).fit(x, x[:, 0] > 0)
    with pytest.raises(UnsafeModel, match="test_flavors.Custom"):
        save_model(model, tmp_path / "m", input_example=x[:2])
    # A file written by someone else that names an untrusted type never loads, whatever skops says.
    import skops.io as sio

    (tmp_path / "evil").mkdir()
    sio.dump(model, tmp_path / "evil" / sk.MODEL_FILE)
    meta = ModelMeta(flavor="sklearn", signature=infer_signature(x[:2]))
    (tmp_path / "evil" / META_FILE).write_text(json.dumps(meta.to_dict()))
    with pytest.raises(UnsafeModel, match="does not trust"):
        load_model(tmp_path / "evil")


def test_allow_list_is_fixed_by_modelyard() -> None:
    assert sk.is_trusted_type("sklearn.linear_model._logistic.LogisticRegression")
    assert sk.is_trusted_type("numpy.log1p")
    assert sk.is_trusted_type("sklearn.tree._tree.Tree")
    for name in (
        "builtins.eval",
        "os.system",
        "sklearn.utils.deprecated",
        "numpy.load",
        "posix.system",
        "builtins.exec",
    ):
        assert not sk.is_trusted_type(name), name


def test_pickle_needs_trust_at_save_and_at_load(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    x = np.random.default_rng(0).normal(size=(20, 2))
    model = make_pipeline(Custom(), LogisticRegression()).fit(x, x[:, 0] > 0)
    meta = save_model(model, tmp_path / "m", input_example=x[:2], trusted_pickle=True)
    assert meta.flavor == "sklearn-pickle"
    with pytest.raises(UnsafeModel, match="allow_pickle"):
        load_model(tmp_path / "m")
    assert load_model(tmp_path / "m", allow_pickle=True).predict(x[:3]).shape == (3,)
    # Flipping the mark in the folder is not enough without trust recorded at save time.
    raw = json.loads((tmp_path / "m" / META_FILE).read_text())
    raw["extra"] = {}
    (tmp_path / "m" / META_FILE).write_text(json.dumps(raw))
    with pytest.raises(UnsafeModel):
        load_model(tmp_path / "m", allow_pickle=True)


def test_python_model_is_saved_as_code_not_pickle(tmp_path: Path) -> None:
    model = AddOne()
    (tmp_path / "offset.txt").write_text("10")
    model.artifacts = {"offset": tmp_path / "offset.txt"}
    meta = save_model(model, tmp_path / "m", input_example=np.zeros((2, 1)))
    assert meta.flavor == "python"
    assert "code/_models.py" in meta.files
    assert not list((tmp_path / "m").rglob("*.pkl"))
    with pytest.raises(UnsafeModel, match="python model: loading it imports and runs its code"):
        load_model(tmp_path / "m")  # its code runs only where it is trusted
    loaded = load_model(tmp_path / "m", allow_pickle=True)
    assert loaded.predict(np.array([[1.0], [2.0]])).tolist() == [11.0, 12.0]


def test_python_model_artifacts_cannot_point_outside_the_folder(tmp_path: Path) -> None:
    import json

    model = AddOne()
    (tmp_path / "offset.txt").write_text("10")
    model.artifacts = {"offset": tmp_path / "offset.txt"}
    save_model(model, tmp_path / "m", input_example=np.zeros((2, 1)))
    meta_file = tmp_path / "m" / "modelyard-model.json"
    doc = json.loads(meta_file.read_text())
    doc["extra"]["artifacts"] = {"offset": "../../etc/hostname"}
    meta_file.write_text(json.dumps(doc))
    with pytest.raises(FlavorError, match="outside the model folder"):
        load_model(tmp_path / "m", allow_pickle=True)


def test_unknown_object_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FlavorError, match="cannot tell how to save"):
        save_model(object(), tmp_path / "m")


def test_onnx_flavor_and_prefer_onnx(tmp_path: Path) -> None:
    pytest.importorskip("skl2onnx")
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)
    meta = save_model(model, tmp_path / "m", input_example=x[:10], prefer_onnx=True)
    assert "onnx" in meta.extra
    assert meta.extra["onnx"]["chosen"] is (meta.flavor == "onnx")
    loaded = load_model(tmp_path / "m")
    assert loaded.predict(x[:7]).tolist() == model.predict(x[:7]).tolist()


@pytest.mark.slow
def test_sklearn_model_loads_in_a_fresh_process_without_every_estimator(tmp_path: Path) -> None:
    """A model server's cold start: loading a scikit-learn model must not import every
    estimator skops would list (pytest included), and skops' own default trust stays empty."""
    import subprocess

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.random.default_rng(0).normal(size=(50, 3))
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, x[:, 0] > 0)
    save_model(model, tmp_path / "m", input_example=x[:2])
    code = (
        "import sys, json, numpy as np\n"
        "from modelyard.flavors import load_model\n"
        f"m = load_model({str(tmp_path / 'm')!r})\n"
        f"out = m.predict(np.array({x[:4].tolist()!r})).tolist()\n"
        "import sklearn.utils\n"
        "loaded = ['sklearn.utils._testing' in sys.modules,"
        " sys.modules['skops.io._trusted_types'].SKLEARN_ESTIMATOR_TYPE_NAMES,"
        " sklearn.utils.all_estimators.__module__,"
        " sys.modules['skops.io._trusted_types'].SCIPY_UFUNC_TYPE_NAMES]\n"
        "import scipy\n"
        "loaded.append(scipy.special is sys.modules['scipy.special'])\n"
        "loaded.append(float(scipy.special.expit(0.0)))\n"
        "print(json.dumps({'out': out, 'loaded': loaded}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["out"] == model.predict(x[:4]).tolist()
    # skops' default trusted estimators and scipy ufuncs stay empty (skops adds them to the list
    # it is given, so modelyard's allow-list alone decides), and what was patched is put back.
    assert answer["loaded"] == [False, [], "sklearn.utils.discovery", [], True, 0.5]
