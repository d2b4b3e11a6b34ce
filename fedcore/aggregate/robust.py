"""Robust aggregation against a minority of poisoned updates, for plain (not secure) rounds.

- `CoordinateMedian`: the coordinate-wise median (Yin et al. 2018). Breakdown point 1/2: with
  f < n/2 arbitrary updates every coordinate stays within the range of the honest values.
- `TrimmedMean(trim_fraction=β)`: per coordinate, drop the k = floor(β n) largest and smallest
  values and average the rest (Yin et al. 2018); withstands f <= k arbitrary updates.
- `MultiKrum(byzantine=f, select=m)`: score each update by the summed squared distances to its
  n - f - 2 nearest others, average the m best-scored (Blanchard et al. 2017; m = 1 is Krum);
  needs n >= 2f + 3.
- `NormBound(bound)`: clip every update to L2 norm `bound`, then the weighted mean
  (Sun et al. 2019, "Can you really backdoor federated learning?"): bounds any one client's
  influence to `bound` / total weight, but a scaled attacker still moves the mean that far.

Memory: median, trimmed mean and Krum need all n updates at once, O(n × model) instead of the
streaming mean's O(model): this module holds them. They ignore the clients' weights (example
counts, which a poisoner could inflate): every update counts once. They act on floating-point
tensors; integer and boolean tensors (counters, masks) are combined by the weighted mean, as
FedAvg does, and norm bounding clips the floating-point part of each update. They need to see each update,
so they cannot run under secure aggregation, where the coordinator sees only the sum; the
configuration refuses the combination (`fedcore.config.strategies`). Norm bounding under secure
aggregation is done by honest clients before masking (see docs/strategies.md).
"""

from __future__ import annotations

import abc
import dataclasses
import math

import numpy as np

from fedcore.aggregate.base import AggregateResult
from fedcore.aggregate.clip import clip_in_place
from fedcore.aggregate.mean import WeightedMean
from fedcore.protocol.params import Array


class _Buffered(abc.ABC):
    """Holds every update's floating-point tensors (unweighted), checked against the first
    one's layout; other tensors go to a streaming weighted mean."""

    def __init__(self) -> None:
        self._updates: list[dict[str, Array]] = []
        self._others = WeightedMean()
        self._names: list[str] | None = None
        self._result: AggregateResult | None = None

    def add(self, update: dict[str, Array], weight: float) -> None:
        """Keep a float copy of `update`; `weight` must be valid but is not used."""
        if self._result is not None:
            raise ValueError("the aggregate was already taken; start a new aggregator per round")
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"weight must be a positive finite number, got {weight}")
        if self._names is not None and list(update) != self._names:
            raise ValueError("update names differ from the first update's")
        floats = {k: v for k, v in update.items() if np.issubdtype(v.dtype, np.floating)}
        others = {k: v for k, v in update.items() if k not in floats}
        if self._updates:
            first = self._updates[0]
            if list(floats) != list(first):
                raise ValueError("update dtypes differ from the first update's")
            for name, value in floats.items():
                if value.shape != first[name].shape:
                    raise ValueError(f"shape of {name!r} is {value.shape}, expected "
                                     f"{first[name].shape}")
        copy: dict[str, Array] = {}
        for name, value in floats.items():
            dtype = np.float64 if value.dtype == np.float64 else np.float32
            copy[name] = np.array(value, dtype=dtype)
            if not np.all(np.isfinite(copy[name])):
                raise ValueError(f"update {name!r} has non-finite entries; reject it")
        if others:
            self._others.add(others, weight)  # checks, then folds: a refusal changes nothing
        self._updates.append(copy)
        self._names = list(update)

    def result(self) -> AggregateResult:
        """The robust combination of everything added (computed once; asked again, the same)."""
        if self._result is not None:
            return self._result
        if not self._updates:
            raise ValueError("no updates were added; an aggregate of nothing is undefined")
        update, measurements = self._combine(self._updates) if self._updates[0] else ({}, {})
        if len(update) < len(self._names or ()):
            update.update(self._others.result().update)
            update = {name: update[name] for name in self._names or ()}
        n = len(self._updates)
        self._result = AggregateResult(update=update, count=n, total_weight=float(n),
                                       measurements=measurements)
        self._updates = []  # the copies are freed: the result is all that is kept
        return self._result

    @abc.abstractmethod
    def _combine(self, updates: list[dict[str, Array]]) -> tuple[dict[str, Array],
                                                                  dict[str, float]]:
        """The round's update and measurements from every update received (each rule's own)."""


class CoordinateMedian(_Buffered):
    """The coordinate-wise median of the round's updates."""

    def _combine(self, updates: list[dict[str, Array]]) -> tuple[dict[str, Array],
                                                                  dict[str, float]]:
        out: dict[str, Array] = {}
        for name in updates[0]:
            stacked = np.stack([u[name] for u in updates]).astype(np.float64, copy=False)
            out[name] = np.asarray(np.median(stacked, axis=0)).astype(updates[0][name].dtype)
        return out, {}


class TrimmedMean(_Buffered):
    """Per coordinate, the mean after dropping the floor(β n) largest and smallest values."""

    def __init__(self, *, trim_fraction: float) -> None:
        if not 0 <= trim_fraction < 0.5:
            raise ValueError(f"trim_fraction must be in [0, 0.5), got {trim_fraction}")
        super().__init__()
        self.trim_fraction = float(trim_fraction)

    def _combine(self, updates: list[dict[str, Array]]) -> tuple[dict[str, Array],
                                                                  dict[str, float]]:
        n = len(updates)
        k = math.floor(self.trim_fraction * n)
        out: dict[str, Array] = {}
        for name in updates[0]:
            stacked = np.sort(np.stack([u[name] for u in updates]), axis=0)
            out[name] = stacked[k:n - k].mean(axis=0, dtype=np.float64).astype(
                stacked.dtype, copy=False)
        return out, {"trimmed_per_side": float(k)}


class MultiKrum(_Buffered):
    """The mean of the `select` updates with the lowest Krum scores (all n - f when 0)."""

    def __init__(self, *, byzantine: int, select: int = 0) -> None:
        if byzantine < 0 or select < 0:
            raise ValueError(f"byzantine and select must be >= 0, got {byzantine}, {select}")
        super().__init__()
        self.byzantine, self.select = byzantine, select

    def _combine(self, updates: list[dict[str, Array]]) -> tuple[dict[str, Array],
                                                                  dict[str, float]]:
        n, f = len(updates), self.byzantine
        if n < 2 * f + 3:
            raise ValueError(f"Krum with byzantine={f} needs at least {2 * f + 3} updates, got "
                             f"{n}: select more clients per round or lower byzantine")
        m = self.select or n - f
        if m > n:
            raise ValueError(f"Krum cannot select {m} of {n} updates")
        flat = np.stack([np.concatenate([np.ravel(u[k]).astype(np.float64) for k in u])
                         for u in updates])
        sq = np.sum(flat * flat, axis=1)
        dist = np.maximum(sq[:, None] + sq[None, :] - 2 * flat @ flat.T, 0.0)
        np.fill_diagonal(dist, np.inf)
        scores = np.sort(dist, axis=1)[:, : n - f - 2].sum(axis=1)
        chosen = np.sort(np.argsort(scores, kind="stable")[:m])
        out: dict[str, Array] = {
            name: np.asarray(np.mean(np.stack([updates[i][name] for i in chosen]), axis=0,
                                     dtype=np.float64)).astype(updates[0][name].dtype)
            for name in updates[0]}
        return out, {"krum_selected": float(m)}


class NormBound:
    """Clip the floating-point part of each update to L2 norm `bound`, then the streaming
    weighted mean (O(model)); integer and boolean tensors pass unclipped. The measurements
    (clipped fraction, mean norm) are exact statistics of the clients' updates."""

    def __init__(self, bound: float) -> None:
        if not (math.isfinite(bound) and bound > 0):
            raise ValueError(f"the norm bound must be a positive finite number, got {bound}")
        self.bound = float(bound)
        self._inner = WeightedMean()
        self._count = self._clipped = 0
        self._norm_sum = 0.0

    def add(self, update: dict[str, Array], weight: float) -> None:
        """Clip `update`'s floats (in place where writable) and fold the update into the mean."""
        floats = {k: v if v.flags.writeable else np.array(v) for k, v in update.items()
                  if np.issubdtype(v.dtype, np.floating)}
        norm = clip_in_place(floats, self.bound)
        self._inner.add({k: floats.get(k, v) for k, v in update.items()}, weight)
        self._count += 1
        self._clipped += int(norm > self.bound)
        self._norm_sum += norm

    def result(self) -> AggregateResult:
        """The mean of the clipped updates, with the clipping statistics."""
        inner = self._inner.result()
        n = self._count
        return dataclasses.replace(inner, measurements={
            **inner.measurements, "norm_bound": self.bound,
            "clipped_fraction": self._clipped / n if n else 0.0,
            "mean_update_norm": self._norm_sum / n if n else 0.0})


