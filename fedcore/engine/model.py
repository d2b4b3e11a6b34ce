"""The global model as the engine holds it: frozen tensors and their layout.

Downloads stream straight from these tensors (`fedcore.wire.tensor.iter_chunk_views`), so the
coordinator keeps one copy of the model, not a second encoded one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedcore.protocol.params import Array, Params
from fedcore.protocol.specs import ModelSpec, spec_of


@dataclass(frozen=True, slots=True)
class RoundModel:
    """Read-only, C-contiguous tensors and their spec."""

    spec: ModelSpec
    params: dict[str, Array]

    @classmethod
    def of(cls, params: Params, *, owned: bool = False) -> RoundModel:
        """Freeze `params`; copies them unless `owned` says nobody else holds them."""
        frozen: dict[str, Array] = {}
        for name, value in params.items():
            array = np.asarray(value) if owned else np.array(value, order="C")
            if not array.flags.c_contiguous:  # (np.ascontiguousarray would make 0-d arrays 1-d)
                array = array.copy(order="C")
            array.setflags(write=False)
            frozen[name] = array
        return cls(spec=spec_of(frozen), params=frozen)
