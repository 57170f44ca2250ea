"""scikit-learn models, stored with skops, loaded only if every type is on modelyard's list.

Why not trust skops' own audit: skops reports what it does not trust, but the decision of what
may be constructed from a model file must not depend on the file. We walk the file's schema,
collect every (module, name) it asks for and check each against rules fixed here: builtins
containers and scalars, numpy arrays/dtypes/scalars/ufuncs, scipy sparse containers, and
scikit-learn classes that are estimators (or a short list of known internal helpers). Anything
else — a user's class, ``builtins.eval``, ``os.system`` — refuses the load.

Pickle is a separate flavor (``sklearn-pickle``) used only when the user marked the model as
trusted at save time and the loader is explicitly allowed to unpickle.
"""

from __future__ import annotations

import importlib
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import IO, Any

from modelyard.errors import FlavorError, UnsafeModel

MODEL_FILE = "model.skops"
PICKLE_FILE = "model.pkl"

_BUILTINS = frozenset(
    "builtins." + n
    for n in (
        "int",
        "float",
        "str",
        "bool",
        "complex",
        "list",
        "dict",
        "tuple",
        "set",
        "frozenset",
        "slice",
        "NoneType",
        "bytes",
        "bytearray",
        "type",
        "object",
    )
)
_NUMPY = frozenset(
    {
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.ma.core.MaskedArray",
        "numpy.random.mtrand.RandomState",
        "numpy.random._generator.Generator",
        "numpy.random._pcg64.PCG64",
        "numpy.random._mt19937.MT19937",
        "numpy.random.bit_generator.SeedSequence",
    }
)
_SCIPY_PREFIXES = (
    "scipy.sparse._csr.",
    "scipy.sparse._csc.",
    "scipy.sparse._coo.",
    "scipy.sparse._dia.",
    "scipy.sparse._lil.",
    "scipy.sparse._dok.",
    "scipy.sparse._bsr.",
)
# Internal scikit-learn types that are not estimators but hold fitted state.
_SKLEARN_INTERNAL = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.utils._bunch.Bunch",
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.IdentityLink",
        "sklearn._loss.link.LogLink",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.HalfLogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.HalfSquaredError",
        "sklearn._loss.loss.AbsoluteError",
        "sklearn._loss.loss.PinballLoss",
        "sklearn._loss.loss.HuberLoss",
        "sklearn._loss.loss.HalfPoissonLoss",
        "sklearn._loss.loss.HalfGammaLoss",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
        "sklearn._loss.loss.ExponentialLoss",
    }
)
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+\Z")


def is_trusted_type(type_name: str) -> bool:
    """The allow-list: True only for types modelyard knows are safe to construct."""
    if not _DOTTED.match(type_name):
        return False
    if type_name in _BUILTINS or type_name in _NUMPY or type_name in _SKLEARN_INTERNAL:
        return True
    module, _, attr = type_name.rpartition(".")
    if module == "numpy":
        import numpy as np

        obj = getattr(np, attr, None)
        # numpy scalar types (numpy.float64) and ufuncs (numpy.log1p in a FunctionTransformer)
        return isinstance(obj, np.ufunc) or (isinstance(obj, type) and issubclass(obj, np.generic))
    if type_name.startswith(_SCIPY_PREFIXES):
        return attr.endswith(("_matrix", "_array"))
    if module == "sklearn" or module.startswith("sklearn."):
        try:
            obj = getattr(importlib.import_module(module), attr, None)
        except ImportError:
            return False
        from sklearn.base import BaseEstimator

        return isinstance(obj, type) and issubclass(obj, BaseEstimator)
    return False


def _schema_types(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        module, cls = node.get("__module__"), node.get("__class__")
        if isinstance(module, str) and isinstance(cls, str):
            found.add(f"{module}.{cls}")
        for value in node.values():
            _schema_types(value, found)
    elif isinstance(node, list):
        for value in node:
            _schema_types(value, found)


def types_in_file(path: Path | IO[bytes]) -> set[str]:
    """Every type or function a skops file asks to construct, read from its schema."""
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as exc:
        raise FlavorError(f"{path} is not a readable skops file: {exc}") from exc
    found: set[str] = set()
    _schema_types(schema, found)
    return found


def check_file(path: Path | IO[bytes], label: str | None = None) -> list[str]:
    """Return the sorted types of ``path`` (all trusted) or raise :class:`UnsafeModel`."""
    types = types_in_file(path)
    refused = sorted(t for t in types if not is_trusted_type(t))
    if refused:
        name = label or (path.name if isinstance(path, Path) else "the skops data")
        raise UnsafeModel(
            f"{name} contains types modelyard does not trust: {', '.join(refused)}. "
            "Use a generic python model for custom code, or save with trusted_pickle=True and "
            "load with allow_pickle=True if you trust where this model came from"
        )
    return sorted(types)


def save(model: Any, folder: Path, *, trusted_pickle: bool) -> tuple[str, list[str]]:
    """Write the model; returns (flavor, files). Falls back to pickle only when trusted."""
    import skops.io as sio

    target = folder / MODEL_FILE
    target.write_bytes(canonical_skops(sio.dumps(model)))
    try:
        check_file(target)
    except UnsafeModel:
        if not trusted_pickle:
            target.unlink()
            raise
        target.unlink()
        import pickle

        with (folder / PICKLE_FILE).open("wb") as fh:
            pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        return "sklearn-pickle", [PICKLE_FILE]
    return "sklearn", [MODEL_FILE]


# Every zip entry gets this date (the zip format's earliest), so the bytes carry no save time.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _renumber(node: Any, ids: dict[int, int]) -> Any:
    """``node`` with skops' ``__id__`` values and ``<id>.npy`` file names (``id()`` of objects
    at save time) replaced by their order of first appearance: same structure, same numbers."""
    if isinstance(node, list):
        return [_renumber(v, ids) for v in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "__id__" and isinstance(value, int):
            out[key] = ids.setdefault(value, len(ids))
        elif key == "file" and isinstance(value, str) and value.removesuffix(".npy").isdigit():
            out[key] = f"{ids.setdefault(int(value.removesuffix('.npy')), len(ids))}.npy"
        else:
            out[key] = _renumber(value, ids)
    return out


def canonical_skops(data: bytes) -> bytes:
    """skops bytes rewritten so the same model always gives the same file.

    skops names arrays and memo entries after ``id()`` of the objects at save time and stamps
    every zip entry with the current time; this renumbers them in schema order, sorts the
    entries and fixes their dates and attributes. The loader reads the result unchanged.
    """
    import io

    with zipfile.ZipFile(io.BytesIO(data)) as src:
        ids: dict[int, int] = {}
        schema = _renumber(json.loads(src.read("schema.json")), ids)
        entries = {"schema.json": (json.dumps(schema, indent=2).encode(), zipfile.ZIP_STORED)}
        for info in src.infolist():
            if info.filename == "schema.json":
                entries["schema.json"] = (entries["schema.json"][0], info.compress_type)
                continue
            stem = info.filename.removesuffix(".npy")
            name = f"{ids[int(stem)]}.npy" if stem.isdigit() and int(stem) in ids else info.filename
            payload = src.read(info)
            if name.endswith(".npy"):
                payload = _zero_padding(payload)
            entries[name] = (payload, info.compress_type)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for name in sorted(entries):
            payload, compression = entries[name]
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = compression
            info.create_system = 3
            info.external_attr = 0o644 << 16
            dst.writestr(info, payload)
    return out.getvalue()


def _zero_padding(npy: bytes) -> bytes:
    """An ``.npy`` of a structured array with padding between or after its fields (a
    scikit-learn tree's nodes: 57 bytes of fields in 64) rewritten with zero padding. numpy
    leaves those bytes as whatever memory held, so the same tree would save differently in
    every process."""
    import io

    import numpy as np

    try:
        array = np.load(io.BytesIO(npy), allow_pickle=False)
    except ValueError:  # object arrays: not a plain buffer, nothing to do
        return npy
    dtype = array.dtype
    if not dtype.names or sum(dtype.fields[n][0].itemsize for n in dtype.names) == dtype.itemsize:
        return npy
    clean = np.zeros(array.shape, dtype=dtype)
    for field in dtype.names:
        clean[field] = array[field]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)
    return out.getvalue()


def _skops_io() -> Any:
    """``skops.io``, imported without building skops' default allow-list.

    On import, skops calls ``sklearn.utils.all_estimators()``, which imports every scikit-learn
    module (and pytest, through ``sklearn.utils._testing``) — about a second and tens of MiB in
    a server that needs two or three estimator classes. skops only uses that list as *default*
    trusted types, added to whatever ``trusted=`` list a caller passes; modelyard always passes
    its own list (:func:`check_file`), so with the default empty skops trusts exactly what
    modelyard allows and nothing more. (A caller relying on skops' defaults in the same process
    would see every estimator as untrusted: stricter, never looser.)

    The same goes for skops' default list of ``scipy.special`` ufuncs: scipy's ufuncs carry no
    ``__module__``, so skops finds each one by scanning every loaded module, ~0.2 s of a model
    server's cold start. modelyard's allow-list trusts no scipy ufunc, so skops is shown an
    empty ``scipy.special`` while it imports, and gets the real one back right after.
    """
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import types

    import scipy
    import sklearn.utils

    everything = sklearn.utils.all_estimators
    special = vars(scipy).get("special")
    sklearn.utils.all_estimators = lambda *args, **kwargs: []
    scipy.special = types.ModuleType("scipy.special")
    try:
        import skops.io as sio
    finally:
        sklearn.utils.all_estimators = everything
        if special is None:
            del scipy.special
        else:
            scipy.special = special
    return sio


def loads(data: bytes, label: str) -> Any:
    """Rebuild skops ``data`` (a pipeline step's value) under the same fixed allow-list as
    models: one trust policy for every skops file modelyard reads."""
    import io

    trusted = check_file(io.BytesIO(data), label)
    return _skops_io().loads(data, trusted=trusted)


def load(folder: Path) -> Any:
    """Load ``model.skops`` after checking every type in it against modelyard's allow-list."""
    path = folder / MODEL_FILE
    trusted = check_file(path)
    sio = _skops_io()
    try:
        return sio.load(path, trusted=trusted)
    except Exception as exc:  # skops raises many types; the model is unusable either way
        raise FlavorError(f"cannot load {path}: {exc}") from exc


def load_pickle(folder: Path) -> Any:
    """Unpickle a model the caller has already decided to trust (see ``load_model``)."""
    import pickle

    with (folder / PICKLE_FILE).open("rb") as fh:
        return pickle.load(fh)  # gated by trusted_pickle and allow_pickle
