"""Deterministic artifacts: the same model and metadata give the same bytes.

Each save runs in a process of its own with a different ``PYTHONHASHSEED`` (object ids, set
order and the clock all differ between them), and the digests must be equal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

SAVE = r"""
import json, sys
from pathlib import Path
import numpy as np, pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from skl2onnx import to_onnx
from modelyard.artifacts.local import LocalArtifactStore
from modelyard.flavors.model import save_model
from modelyard.pipeline import serializers

out = Path(sys.argv[1])
rng = np.random.RandomState(0)
X = rng.rand(60, 4)
y = (X[:, 0] > 0.5).astype(int)
model = make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=3, random_state=0))
model.fit(X, y)
store = LocalArtifactStore(out / "store")
save_model(model, out / "sk", input_example=X[:2])
onx = to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False})
save_model(onx, out / "onnx", flavor="onnx")
frame = pd.DataFrame({"a": [1.5, 2.5], "b": ["x", "y"], "c": [3, 4]})
values = {"frame": frame, "array": X, "doc": {"z": 1, "a": [1, 2]}, "model": model}
digests = {
    name: serializers.dump(v, step="s", output=name, artifacts=store, allow_pickle=False).digest
    for name, v in values.items()
}
digests["sk_folder"] = store.put_dir(out / "sk")[0]
digests["onnx_folder"] = store.put_dir(out / "onnx")[0]
print(json.dumps(digests, sort_keys=True))
"""


def _save(tmp: Path, seed: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONHASHSEED": seed, "SOURCE_DATE_EPOCH": "1700000000"}
    done = subprocess.run(
        [sys.executable, "-c", SAVE, str(tmp)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_same_model_gives_same_bytes_in_two_processes(tmp_path: Path) -> None:
    first = _save(tmp_path / "a", "1")
    second = _save(tmp_path / "b", "2")
    assert first == second
    assert set(first) == {"frame", "array", "doc", "model", "sk_folder", "onnx_folder"}
    for name in ("sk/model.skops", "sk/modelyard-model.json", "onnx/model.onnx"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    with zipfile.ZipFile(tmp_path / "a" / "sk" / "model.skops") as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert json.loads((tmp_path / "a" / "sk" / "modelyard-model.json").read_bytes())["created"] == (
        "2023-11-14T22:13:20+00:00"
    )


def test_canonical_skops_loads_to_the_same_predictions(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    from modelyard.flavors.model import load_model, save_model

    rng = np.random.RandomState(1)
    X = rng.rand(40, 3)
    model = RandomForestClassifier(n_estimators=4, random_state=0).fit(X, X[:, 1] > 0.4)
    save_model(model, tmp_path / "m", input_example=X[:2])
    loaded = load_model(tmp_path / "m")
    assert (loaded.predict(X) == model.predict(X)).all()


def test_padding_bytes_of_structured_arrays_do_not_reach_the_file(tmp_path: Path) -> None:
    """A tree's node array has 7 padding bytes per node that numpy leaves as whatever memory
    held: the same tree loaded and saved again gave another model.skops (found by
    ``modelyard reproduce`` on the maintenance example)."""
    import io

    import skops.io as sio
    from sklearn.tree import DecisionTreeClassifier

    from modelyard.flavors.sklearn import canonical_skops

    rng = np.random.RandomState(2)
    X = rng.rand(50, 3)
    tree = DecisionTreeClassifier(random_state=0).fit(X, X[:, 0] > 0.5)
    raw = sio.dumps(tree)

    def with_padding(fill: int) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(raw)) as src, zipfile.ZipFile(out, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if info.filename.endswith(".npy"):
                    array = np.load(io.BytesIO(data), allow_pickle=False)
                    if array.dtype.names and array.dtype.itemsize > 57:
                        # writable over our own bytes: .copy() copies the fields only, and the
                        # padding would be whatever the allocator handed out
                        dirty = np.frombuffer(bytearray([fill]) * array.nbytes, array.dtype)
                        for name in array.dtype.names:
                            dirty[name] = array[name]
                        buffer = io.BytesIO()
                        np.save(buffer, dirty, allow_pickle=False)
                        data = buffer.getvalue()
                dst.writestr(info, data)
        return out.getvalue()

    first, second = with_padding(0xAB), with_padding(0xCD)
    assert first != second
    assert canonical_skops(first) == canonical_skops(second)
    (tmp_path / "m.skops").write_bytes(canonical_skops(first))
    loaded = sio.load(
        tmp_path / "m.skops", trusted=sio.get_untrusted_types(file=tmp_path / "m.skops")
    )
    assert (loaded.predict(X) == tree.predict(X)).all()
