"""Weighted means of scalar metrics (losses, accuracies) across clients."""

from __future__ import annotations

import math

from fedcore.protocol.params import Metrics


class MetricsMean:
    """Running example-weighted mean of each metric; a metric missing from a client is skipped."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._weights: dict[str, float] = {}

    def add(self, metrics: Metrics, weight: float) -> None:
        """Fold one client's metrics with `weight` (usually its number of examples)."""
        for key, value in metrics.items():
            if math.isfinite(value):
                self._sums[key] = self._sums.get(key, 0.0) + weight * value
                self._weights[key] = self._weights.get(key, 0.0) + weight

    def result(self) -> dict[str, float]:
        """The weighted mean of each metric seen so far."""
        return {k: self._sums[k] / self._weights[k] for k in self._sums if self._weights[k] > 0}
