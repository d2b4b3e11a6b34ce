"""The global model as the engine holds it: tensors plus their encoded payload, built once."""

from __future__ import annotations

from dataclasses import dataclass

from fedcore.params import Array, Params
from fedcore.wire.tensor import ModelSpec, decode, encode, spec_of


@dataclass(frozen=True, slots=True)
class RoundModel:
    """Read-only tensors that are views into `payload`, the bytes every download streams."""

    spec: ModelSpec
    payload: bytes
    params: dict[str, Array]

    @classmethod
    def of(cls, params: Params) -> RoundModel:
        """Encode `params` once; the tensors become views of the encoded bytes (no second copy)."""
        spec = spec_of(params)
        payload = encode(params)
        return cls(spec=spec, payload=payload, params=decode(spec, payload))
