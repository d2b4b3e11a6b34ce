"""The operator's model files: initial parameters (.npz) and a model spec that pins the layout.

A model spec file is JSON, one entry per tensor in order:

    {"tensors": [{"name": "fc1.weight", "dtype": "float32", "shape": [64, 64]},
                 {"name": "fc1.bias", "dtype": "float32", "shape": [64]}]}

or an .npz whose arrays give the layout (names, dtypes, shapes; the values are not used).
Neither is ever unpickled.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.config import ConfigError
from fedcore.protocol.errors import WireError
from fedcore.protocol.params import Array
from fedcore.protocol.specs import ModelSpec, TensorSpec, spec_of


def load_npz(path: Path) -> dict[str, Array]:
    """Parameters from an .npz file (never unpickles).

    Raises:
        ConfigError: the file cannot be read or is not an .npz of plain arrays.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ConfigError(f"cannot read the model file {path}: {err}") from err


def load_model_spec(path: Path) -> ModelSpec:
    """The layout a spec file (JSON, or an .npz's arrays) pins.

    Raises:
        ConfigError: the file cannot be read or does not describe a layout; the message says
            which entry is wrong.
    """
    path = Path(path)
    if path.suffix == ".npz":
        try:
            return spec_of(load_npz(path))
        except WireError as err:
            raise ConfigError(f"model spec {path}: {err}") from err
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"cannot read the model spec {path}: {err}") from err
    return spec_from_json(data, where=str(path))


def spec_from_json(data: Any, *, where: str = "model spec") -> ModelSpec:
    """A `ModelSpec` from the JSON form above.

    Raises:
        ConfigError: an entry lacks a name, dtype or shape, or has a bad one.
    """
    entries = data.get("tensors") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: expected {{\"tensors\": [{{\"name\", \"dtype\", "
                          f"\"shape\"}}, ...]}} with at least one tensor")
    tensors = []
    for i, entry in enumerate(entries):
        try:
            name, dtype, shape = entry["name"], entry["dtype"], entry["shape"]
            if not isinstance(name, str) or not name:
                raise ValueError("name must be a non-empty string")
            if not isinstance(shape, list) or not all(type(d) is int for d in shape):
                raise ValueError("shape must be a list of integers")
            tensors.append(TensorSpec(name=name, dtype=np.dtype(dtype), shape=tuple(shape)))
        except KeyError as err:
            raise ConfigError(f"{where}: tensor {i} has no {err.args[0]!r}") from err
        except (TypeError, ValueError, WireError) as err:
            raise ConfigError(f"{where}: tensor {i}: {err}") from err
    try:
        return ModelSpec(tensors=tuple(tensors))
    except WireError as err:
        raise ConfigError(f"{where}: {err}") from err


def spec_to_json(spec: ModelSpec) -> dict[str, Any]:
    """The JSON form of `spec` (what `load_model_spec` reads)."""
    return {"tensors": [{"name": t.name, "dtype": t.dtype.name, "shape": list(t.shape)}
                        for t in spec.tensors]}
