"""What a saved model says about itself: flavor, signature, requirements.

These are plain frozen values serialised to ``modelyard-model.json`` in the model folder. The
registry stores the same JSON, the image builder reads ``requirements`` and the server enforces
``signature`` — so this module imports nothing heavier than the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from modelyard.errors import FlavorError

META_FILE = "modelyard-model.json"
INPUT_EXAMPLE_FILE = "input-example.json"
FORMAT_VERSION = 1

#: numpy dtype names a signature may declare; "str" is text (numpy object/unicode arrays).
DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "str",
)

#: Open Inference Protocol V2 datatypes for each signature dtype.
V2_DATATYPES = {
    "bool": "BOOL",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
    "str": "BYTES",
}


@dataclass(frozen=True)
class ColumnSpec:
    """One named input or output. ``shape`` is None for a column of scalars (one value per
    row); for a tensor it includes the batch dimension as -1, e.g. ``(-1, 4)``."""

    name: str
    dtype: str
    shape: tuple[int, ...] | None = None
    allow_nan: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise FlavorError(
                f"{self.name!r}: unsupported dtype {self.dtype!r} (expected one of "
                f"{', '.join(DTYPES)})"
            )

    @property
    def v2_datatype(self) -> str:
        return V2_DATATYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "dtype": self.dtype}
        if self.shape is not None:
            out["shape"] = list(self.shape)
        if self.allow_nan:
            out["allow_nan"] = True
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnSpec:
        shape = data.get("shape")
        return cls(
            name=str(data["name"]),
            dtype=str(data["dtype"]),
            shape=None if shape is None else tuple(int(d) for d in shape),
            allow_nan=bool(data.get("allow_nan", False)),
        )


@dataclass(frozen=True)
class Signature:
    """The model's inputs and outputs.

    ``kind="columns"``: a table — every input is a scalar column, rows are the batch
    (a DataFrame). ``kind="tensor"``: one or more n-d arrays whose first axis is the batch.
    """

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[ColumnSpec, ...] = ()
    kind: Literal["columns", "tensor"] = "columns"

    def __post_init__(self) -> None:
        if not self.inputs:
            raise FlavorError("a signature needs at least one input")
        names = [c.name for c in self.inputs]
        if len(set(names)) != len(names):
            raise FlavorError(f"duplicate input names in signature: {names}")
        if self.kind == "tensor":
            for spec in self.inputs:
                if spec.shape is None or not spec.shape or spec.shape[0] != -1:
                    raise FlavorError(
                        f"tensor input {spec.name!r} needs a shape whose first (batch) "
                        "dimension is -1"
                    )

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "inputs": [c.to_dict() for c in self.inputs],
            "outputs": [c.to_dict() for c in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        kind = data.get("kind", "columns")
        if kind not in ("columns", "tensor"):
            raise FlavorError(f"unknown signature kind {kind!r}")
        return cls(
            inputs=tuple(ColumnSpec.from_dict(c) for c in data["inputs"]),
            outputs=tuple(ColumnSpec.from_dict(c) for c in data.get("outputs", [])),
            kind=kind,
        )


@dataclass(frozen=True)
class ModelMeta:
    """Contents of ``modelyard-model.json``.

    ``requirements`` maps distribution names to the exact versions installed when the model was
    saved; the image builder installs exactly these. ``files`` lists the folder's files
    (relative, '/'-separated) so a copy can be checked for completeness. ``extra`` holds
    flavor-specific facts (the python class, the pickle trust mark, the ONNX choice).
    """

    flavor: str
    signature: Signature
    requirements: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "flavor": self.flavor,
            "signature": self.signature.to_dict(),
            "requirements": dict(sorted(self.requirements.items())),
            "files": list(self.files),
            "created": self.created,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMeta:
        version = data.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise FlavorError(
                f"model metadata format {version!r} is newer than this modelyard understands "
                f"({FORMAT_VERSION}); upgrade modelyard"
            )
        try:
            return cls(
                flavor=str(data["flavor"]),
                signature=Signature.from_dict(data["signature"]),
                requirements={str(k): str(v) for k, v in data.get("requirements", {}).items()},
                files=tuple(str(f) for f in data.get("files", [])),
                created=str(data.get("created", "")),
                extra=dict(data.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FlavorError(f"invalid model metadata: {exc!r}") from exc
