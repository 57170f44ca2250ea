"""The model server hides pandas from tensor models (memory, cold start), and only from them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.flavors import save_model
from modelyard.serving.lean import HiddenModules, hide_unused_libraries

sys.path.insert(0, str(Path(__file__).parent))
from _models import AddOne


def _lr(tmp_path: Path, example: Any) -> Path:
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(20, 2))
    model = LogisticRegression().fit(example(x), x[:, 0] > 0)
    save_model(model, tmp_path / "m", input_example=example(x[:2]))
    return tmp_path / "m"


def test_tensor_model_hides_pandas(tmp_path: Path) -> None:
    meta_path: list[Any] = []
    assert hide_unused_libraries(_lr(tmp_path, lambda x: x), meta_path=meta_path, modules={})
    assert len(meta_path) == 1
    with pytest.raises(ModuleNotFoundError, match="tensor"):
        meta_path[0].find_spec("pandas.core.frame")
    assert meta_path[0].find_spec("pandastic") is None
    assert meta_path[0].find_spec("numpy") is None
    # Idempotent: a second call does not stack finders.
    assert hide_unused_libraries(tmp_path / "m", meta_path=meta_path, modules={})
    assert len(meta_path) == 1


def test_column_model_keeps_pandas(tmp_path: Path) -> None:
    import pandas as pd

    model_dir = _lr(tmp_path, lambda x: pd.DataFrame(x, columns=["a", "b"]))
    meta_path: list[Any] = []
    assert not hide_unused_libraries(model_dir, meta_path=meta_path, modules={})
    assert meta_path == []


def test_python_model_and_loaded_pandas_and_bad_folder_keep_pandas(tmp_path: Path) -> None:
    save_model(AddOne(), tmp_path / "py", input_example=np.zeros((2, 3)))
    meta_path: list[Any] = []
    assert not hide_unused_libraries(tmp_path / "py", meta_path=meta_path, modules={})
    tensor_dir = _lr(tmp_path, lambda x: x)
    assert not hide_unused_libraries(tensor_dir, meta_path=meta_path, modules={"pandas": object()})
    assert not hide_unused_libraries(tmp_path / "missing", meta_path=meta_path, modules={})
    assert meta_path == []


def test_prediction_log_writes_without_pyarrow(tmp_path: Path) -> None:
    """The log encodes its Arrow IPC stream itself: a server never imports pyarrow for it (on
    main a first import of pyarrow in the log's writer thread raced scikit-learn's
    ``sys.modules["pyarrow"]`` look-ups and answered 500s under load; before this change it
    imported pyarrow at start, 0.1-0.2 s of every cold start). The schema it writes is the one
    pyarrow serialises, and pyarrow reads what it wrote."""
    import subprocess

    from modelyard.serving.predlog import _SCHEMA_MESSAGE, _schema, read_predictions

    code = (
        "import sys\n"
        "from modelyard.serving.predlog import SegmentLog\n"
        f"log = SegmentLog({str(tmp_path)!r}, 'predictions', segment_bytes=1 << 20,"
        " segment_seconds=60)\n"
        "log.start()\n"
        "log.put(('r1', 0, 'm', '1', 'v2', [[1.0, 2.0]], [1], 0.5, 1))\n"
        "log.close()\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pyarrow', 'pandas'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    for kind, message in _SCHEMA_MESSAGE.items():
        assert message == _schema(kind).serialize().to_pybytes(), kind
    assert read_predictions(tmp_path).to_pylist()[0]["inputs"] == "[[1.0,2.0]]"
    assert isinstance(HiddenModules(["pandas"]), HiddenModules)
