"""Central Gaussian noise for user-level DP-FedAvg, and adaptive clipping (Andrew et al. 2021).

Estimator and guarantee. `GaussianNoise` ignores client weights: it sums the (already clipped,
norm <= C) updates unweighted, adds N(0, (z·C)^2) to every coordinate of the SUM, and divides:

- by `expected_clients` m (McMahan et al. 2018's fixed-denominator estimator with unit
  weights) when given: `(sum + noise) / m`, std of the mean z·C/m. This is the estimator the
  user-level guarantee in `fedcore.dp.user_level` is proven for: the sum has L2 sensitivity C
  under adding/removing one client, and m does not depend on the data;
- by the number n of updates actually added when `expected_clients` is None: std z·C/n. This
  treats n as public, which holds when the cohort size is fixed and dropouts are independent
  of the data; under Poisson client sampling n is itself data-dependent and not covered.

Weighted means (by num_examples) are not offered under DP: a weight multiplies a client's
sensitivity. The noise comes from the numpy Generator passed in: seed it for tests, from
`os.urandom` in deployment. Floating-point Gaussian noise is open to Mironov's (2012)
precision attacks; the integer noise of `fedcore.dp.distributed` is not.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.aggregate.clip import Clip, ClipStats
from fedcore.aggregate.mean import WeightedMean
from fedcore.protocol.params import Array, Metrics


class GaussianNoise:
    """Unweighted sum of clipped updates + N(0, (z·C)^2) per coordinate, divided as above."""

    def __init__(
        self,
        inner: Aggregator,
        *,
        noise_multiplier: float,
        clip_norm: float,
        rng: np.random.Generator,
        expected_clients: int | None = None,
    ) -> None:
        if not math.isfinite(noise_multiplier) or noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {noise_multiplier}")
        if not math.isfinite(clip_norm) or clip_norm <= 0:
            raise ValueError(f"clip_norm must be positive, got {clip_norm}")
        if expected_clients is not None and expected_clients < 1:
            raise ValueError(f"expected_clients must be >= 1, got {expected_clients}")
        self._inner = inner
        self.noise_std = noise_multiplier * clip_norm
        self._rng = rng
        self._expected_clients = expected_clients

    def add(self, update: dict[str, Array], weight: float) -> None:
        """Fold `update` with unit weight (`weight` is ignored; see the module docstring)."""
        self._inner.add(update, 1.0)

    def result(self) -> AggregateResult:
        """Noised sum over the denominator; `inner` must return a mean with `total_weight`."""
        inner = self._inner.result()
        denominator = float(self._expected_clients or inner.count)
        update = {}
        for name, mean in inner.update.items():
            noise = self._rng.normal(0.0, self.noise_std, size=mean.shape)
            noisy_sum = np.multiply(mean, inner.total_weight) + noise
            update[name] = np.divide(noisy_sum, denominator).astype(mean.dtype, copy=False)
        measurements = {
            **inner.measurements,
            "noise_std_sum": self.noise_std,
            "noise_std_mean": self.noise_std / denominator,
            "denominator": denominator,
        }
        return dataclasses.replace(inner, update=update, measurements=measurements)


def dp_mean(
    *,
    clip_norm: float,
    noise_multiplier: float,
    rng: np.random.Generator,
    expected_clients: int | None,
    inner: Aggregator | None = None,
) -> Clip:
    """DP-FedAvg's aggregator for one round: `Clip(GaussianNoise(inner or WeightedMean()))`."""
    noised = GaussianNoise(
        inner if inner is not None else WeightedMean(),
        noise_multiplier=noise_multiplier,
        clip_norm=clip_norm,
        rng=rng,
        expected_clients=expected_clients,
    )
    return Clip(noised, clip_norm=clip_norm)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveClipping:
    """Quantile-based clip adaptation: target quantile γ, learning rate η, count noise σ_b.

    Andrew et al. suggest γ=0.5, η=0.2, σ_b = expected clients / 20. The update's noise
    multiplier must then be lowered so both queries fit one budget:
    `fedcore.dp.user_level.noise_multiplier_for_adaptive_clipping`.
    """

    count_noise_std: float
    target_quantile: float = 0.5
    learning_rate: float = 0.2

    def __post_init__(self) -> None:
        if not 0 <= self.target_quantile <= 1:
            raise ValueError(f"target_quantile must be in [0, 1], got {self.target_quantile}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.count_noise_std >= 0:
            raise ValueError(f"count_noise_std must be >= 0, got {self.count_noise_std}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AdaptiveClipState:
    """What adaptive clipping carries from one round to the next."""

    clip_norm: float


def next_clip_state(
    state: AdaptiveClipState,
    stats: ClipStats,
    *,
    config: AdaptiveClipping,
    expected_clients: int,
    rng: np.random.Generator,
) -> tuple[AdaptiveClipState, Metrics]:
    """C <- C·exp(-η(b̄ - γ)), b̄ the noised fraction of updates with norm <= C.

    b̄ = (Σ(b_i - 1/2) + N(0, σ_b^2)) / m + 1/2 with b_i = 1[norm_i <= C]: the centred sum has
    sensitivity 1/2 (Andrew et al. 2021, Alg. 1). Under secure aggregation the clients send b_i
    inside the masked vector and `stats` carries only the summed counts.
    """
    if expected_clients < 1:
        raise ValueError(f"expected_clients must be >= 1, got {expected_clients}")
    centred = stats.unclipped_count - stats.count / 2
    noisy_fraction = (centred + rng.normal(0.0, config.count_noise_std)) / expected_clients + 0.5
    factor = math.exp(-config.learning_rate * (noisy_fraction - config.target_quantile))
    new_state = AdaptiveClipState(clip_norm=state.clip_norm * factor)
    return new_state, {"noisy_unclipped_fraction": noisy_fraction, "next_clip_norm": new_state.clip_norm}
