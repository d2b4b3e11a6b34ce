"""User-level DP-FedAvg (McMahan et al. 2018) with optional adaptive clipping (Andrew et al. 2021).

The strategy composes the existing wrappers, `Clip(GaussianNoise(WeightedMean()))`
(`fedcore.aggregate.dp_noise.dp_mean`), and adds the state that crosses rounds: the clip norm
(adaptive clipping moves it) and the number of noisy aggregates released (what ε counts).

Guarantee (add/remove-one-client neighbours, `fedcore.dp.user_level`): after r released rounds,
(ε, δ)-DP for every client's whole data, with ε = `user_level_epsilon(z, q = m / N, r, δ)`, when
1. the COORDINATOR clips: every update is clipped to L2 norm C here, server side, so clients need
   not be trusted to clip; the coordinator sees each update in the clear and must be trusted
   (with secure aggregation use the distributed noise of `fedcore.dp.secagg_noise` instead);
2. noise N(0, (z_Δ·C)²) is added to the unweighted sum, which is divided by the FIXED
   denominator m = expected clients per round (not the number received, which is
   data-dependent under Poisson sampling): the estimator the proof covers;
3. clients are sampled with rate q = m / N, N the population given here. The engine selects a
   fixed number without replacement, for which Poisson-sampling accounting is the usual
   approximation, not a proof (see `fedcore.dp.user_level`);
4. the noise source is secret: the default generator is seeded from `secrets` (128 bits).
With adaptive clipping, the noised clipped-count query shares the budget: accounting uses the
total z, the update is noised with z_Δ = `noise_multiplier_for_adaptive_clipping(z, σ_b)`.
Only DP-covered outputs go to the measurements (the exact clipped fraction and mean norm of
`Clip` are dropped). Floating-point Gaussian noise is open to precision attacks (Mironov 2012).
"""

from __future__ import annotations

import dataclasses
import math
import secrets

import numpy as np

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.aggregate.clip import Clip
from fedcore.aggregate.dp_noise import AdaptiveClipping, AdaptiveClipState, dp_mean, next_clip_state
from fedcore.dp.user_level import (
    noise_multiplier_for_adaptive_clipping,
    noise_multiplier_for_user_level,
    user_level_epsilon,
)
from fedcore.messages import TrainConfig
from fedcore.params import Array, Params
from fedcore.strategy.fedavg import FedAvg

_NOT_DP = ("clipped_fraction", "mean_update_norm")  # exact statistics: never published


class DPFedAvg:
    """FedAvg whose aggregate is clipped, noised and accounted at the user level.

    Args:
        noise_multiplier: z, the total noise multiplier accounted for (> 0).
        clip_norm: C, the initial L2 bound on each client's update.
        clients_per_round: m, expected clients per round (the fixed denominator).
        population: N, how many clients may be sampled (sample rate m / N).
        delta: δ of the reported ε.
        adaptive: adaptive clipping's settings, or None for a fixed C.
        rng: the noise source; default seeded from `secrets`. Tests pass a seeded one.
        local_epochs, batch_size, learning_rate, server_lr: as in `FedAvg`.
    """

    def __init__(
        self,
        *,
        noise_multiplier: float,
        clip_norm: float,
        clients_per_round: int,
        population: int,
        delta: float = 1e-5,
        adaptive: AdaptiveClipping | None = None,
        rng: np.random.Generator | None = None,
        local_epochs: int = 1,
        batch_size: int = 32,
        learning_rate: float = 0.01,
        server_lr: float = 1.0,
    ) -> None:
        if not math.isfinite(noise_multiplier) or noise_multiplier <= 0:
            raise ValueError(f"noise_multiplier must be > 0, got {noise_multiplier}")
        if not math.isfinite(clip_norm) or clip_norm <= 0:
            raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
        if not 0 < clients_per_round <= population:
            raise ValueError(f"clients_per_round must be in [1, population={population}], "
                             f"got {clients_per_round}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.noise_multiplier = noise_multiplier
        self.update_noise_multiplier = (
            noise_multiplier_for_adaptive_clipping(noise_multiplier, adaptive.count_noise_std)
            if adaptive is not None else noise_multiplier
        )
        self.clients_per_round = clients_per_round
        self.population = population
        self.delta = delta
        self.adaptive = adaptive
        self._fedavg = FedAvg(local_epochs=local_epochs, batch_size=batch_size,
                              learning_rate=learning_rate, server_lr=server_lr)
        self._rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
        self._clip = AdaptiveClipState(clip_norm=float(clip_norm))
        self._released = 0

    @classmethod
    def for_target_epsilon(
        cls, *, target_epsilon: float, rounds: int, clients_per_round: int, population: int,
        delta: float = 1e-5, **kwargs: object,
    ) -> DPFedAvg:
        """The strategy whose z spends at most `target_epsilon` over `rounds` rounds."""
        z = noise_multiplier_for_user_level(
            target_epsilon=target_epsilon, delta=delta, clients_per_round=clients_per_round,
            population=population, rounds=rounds,
        )
        return cls(noise_multiplier=z, clients_per_round=clients_per_round,
                   population=population, delta=delta, **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ state
    @property
    def clip_norm(self) -> float:
        """The clip norm the next round uses."""
        return self._clip.clip_norm

    @property
    def rounds_released(self) -> int:
        """Noisy aggregates released so far (what ε is accounted over)."""
        return self._released

    def epsilon(self) -> float:
        """User-level ε spent so far (0 before the first release)."""
        if self._released == 0:
            return 0.0
        return user_level_epsilon(
            noise_multiplier=self.noise_multiplier, clients_per_round=self.clients_per_round,
            population=self.population, rounds=self._released, delta=self.delta,
        )

    def state_arrays(self) -> dict[str, Array]:
        """The clip norm and the released-round count, for checkpoints."""
        return {"clip_norm": np.array(self._clip.clip_norm, np.float64),
                "rounds_released": np.array(self._released, np.int64)}

    def load_state_arrays(self, state: dict[str, Array]) -> None:
        """Take back `state_arrays()`; an empty dict (a stateless run's snapshot) keeps ours."""
        if not state:
            return
        clip, released = float(state["clip_norm"]), int(state["rounds_released"])
        if not (math.isfinite(clip) and clip > 0) or released < 0:
            raise ValueError(f"bad DP-FedAvg state: clip_norm={clip}, rounds_released={released}")
        self._clip, self._released = AdaptiveClipState(clip_norm=clip), released

    # ------------------------------------------------------------------ strategy
    def train_config(self, round_number: int) -> TrainConfig:
        """Plain local training: the privacy comes from the server's clip and noise."""
        return self._fedavg.train_config(round_number)

    def aggregator(self, round_number: int) -> Aggregator:
        """Clip to the current C, noise the sum, divide by m; releasing it spends one round."""
        clip = dp_mean(clip_norm=self._clip.clip_norm,
                       noise_multiplier=self.update_noise_multiplier, rng=self._rng,
                       expected_clients=self.clients_per_round)
        return _Release(self, clip)

    def apply(self, params: Params, result: AggregateResult) -> dict[str, Array]:
        """`params + server_lr * noisy_mean_update`."""
        return self._fedavg.apply(params, result)

    def _release(self, clip: Clip) -> AggregateResult:
        inner = clip.result()
        used = self._clip.clip_norm
        measurements = {k: v for k, v in inner.measurements.items() if k not in _NOT_DP}
        if self.adaptive is not None:
            self._clip, adapt = next_clip_state(
                self._clip, clip.stats, config=self.adaptive,
                expected_clients=self.clients_per_round, rng=self._rng,
            )
            measurements.update(adapt)
        self._released += 1
        measurements.update(
            user_epsilon=self.epsilon(), clip_norm=used,
            noise_std=self.update_noise_multiplier * used,
        )
        return dataclasses.replace(inner, measurements=measurements)


class _Release:
    """One round's aggregator: `Clip(GaussianNoise(WeightedMean()))`, released at most once."""

    def __init__(self, strategy: DPFedAvg, clip: Clip) -> None:
        self._strategy, self._clip = strategy, clip
        self._result: AggregateResult | None = None

    def add(self, update: dict[str, Array], weight: float) -> None:
        """Clip and fold one client's update (its weight is ignored: unit weights)."""
        if self._result is not None:
            raise ValueError("this round's aggregate was already released")
        self._clip.add(update, weight)

    def result(self) -> AggregateResult:
        """The noisy mean; the first call spends the round's privacy, later calls repeat it."""
        if self._result is None:
            self._result = self._strategy._release(self._clip)
        return self._result
