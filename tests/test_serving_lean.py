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


def test_prediction_log_imports_pyarrow_before_any_request(tmp_path: Path) -> None:
    """A first import of pyarrow in a writer thread raced with scikit-learn's
    ``sys.modules["pyarrow"]`` look-ups on the event loop and answered 500s under load: the log
    imports it when it starts, in the caller's thread."""
    import subprocess

    code = (
        "import sys\n"
        "from modelyard.serving.predlog import SegmentLog\n"
        f"log = SegmentLog({str(tmp_path)!r}, 'predictions', segment_bytes=1,"
        " segment_seconds=1)\n"
        "log.start()\n"
        "print('pyarrow.ipc' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert isinstance(HiddenModules(["pandas"]), HiddenModules)
