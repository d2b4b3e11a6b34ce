"""Norm clipping as an aggregator wrapper: bound every client's contribution before it is folded.

After `Clip(inner, clip_norm=C)`, every update that reaches `inner` has global L2 norm <= C,
which is the sensitivity user-level DP-FedAvg (McMahan et al. 2018) relies on. The
measurements (clipped fraction, mean pre-clip norm) are exact statistics of the clients'
updates, for a trusted coordinator's monitoring: they are not covered by any DP guarantee and
should not be published. Adaptive clipping uses a noised count instead (`dp_noise.py`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.protocol.params import Array, global_norm


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ClipStats:
    """Exact counts of one round: updates seen, those already within the bound, their norms."""

    count: int
    unclipped_count: int
    norm_sum: float


class Clip:
    """Scale each update down to global L2 norm `clip_norm` (if above), then pass it on."""

    def __init__(self, inner: Aggregator, *, clip_norm: float) -> None:
        if not math.isfinite(clip_norm) or clip_norm <= 0:
            raise ValueError(f"clip_norm must be a positive finite number, got {clip_norm}")
        self._inner = inner
        self.clip_norm = float(clip_norm)
        self._stats = ClipStats(count=0, unclipped_count=0, norm_sum=0.0)

    @property
    def stats(self) -> ClipStats:
        """Counts so far (for adaptive clipping's `next_clip_state`)."""
        return self._stats

    def add(self, update: dict[str, Array], weight: float) -> None:
        """Clip `update` in place and fold it into the inner aggregator."""
        norm = clip_in_place(update, self.clip_norm)
        self._inner.add(update, weight)
        s = self._stats
        self._stats = ClipStats(
            count=s.count + 1,
            unclipped_count=s.unclipped_count + int(norm <= self.clip_norm),
            norm_sum=s.norm_sum + norm,
        )

    def result(self) -> AggregateResult:
        """The inner result, with `clip_norm`, `clipped_fraction` and `mean_update_norm` added."""
        inner = self._inner.result()
        s = self._stats
        measurements = {
            **inner.measurements,
            "clip_norm": self.clip_norm,
            "clipped_fraction": (s.count - s.unclipped_count) / s.count if s.count else 0.0,
            "mean_update_norm": s.norm_sum / s.count if s.count else 0.0,
        }
        return dataclasses.replace(inner, measurements=measurements)


def clip_in_place(update: dict[str, Array], clip_norm: float) -> float:
    """Scale `update` so its global L2 norm is at most `clip_norm`; return the norm before.

    Raises:
        ValueError: a non-floating tensor, or a non-finite norm (reject the client's update).
    """
    for name, value in update.items():
        if not np.issubdtype(value.dtype, np.floating):
            raise ValueError(f"update {name!r} has dtype {value.dtype}; clipping needs floats")
    norm = global_norm(update)
    if not math.isfinite(norm):
        raise ValueError("update has a non-finite norm (NaN or inf entries); reject it")
    if norm > clip_norm:
        factor = clip_norm / norm * (1 - 1e-6)  # margin for float32 rounding: stay under C
        for value in update.values():
            np.multiply(value, factor, out=value, casting="same_kind")
    return norm
