"""User-level DP-FedAvg (McMahan et al. 2018) with optional adaptive clipping (Andrew et al. 2021).

The strategy composes the existing wrappers, `Clip(GaussianNoise(WeightedMean()))`
(`fedcore.aggregate.dp_noise.dp_mean`), and adds the state that crosses rounds: the clip norm
(adaptive clipping moves it) and the number of noisy aggregates released (what ε counts).

Guarantee (add/remove-one-client neighbours, `fedcore.dp.user_level`): after r released rounds,
(ε, δ)-DP for every client's whole data, with ε what Opacus' RDP accountant gives for the r
steps (z, q_i), q_i the inclusion probability of round i as it really happened, when
1. the COORDINATOR clips: every update is clipped to L2 norm C here, server side, so clients need
   not be trusted to clip; the coordinator sees each update in the clear and must be trusted
   (with secure aggregation use the distributed noise of `fedcore.dp.secagg_noise` instead);
2. noise N(0, (z_Δ·C)²) is added to the unweighted sum, which is divided by the FIXED
   denominator m = expected clients per round (not the number received, which is
   data-dependent under Poisson sampling): the estimator the proof covers;
3. the round engine tells the strategy how each round was sampled (`SampledStrategy`): q_i =
   selected / available at that selection, over-selection included, or selected / N where the
   declared population N is smaller (`inclusion_probability`); a caller that gives no sampling
   (`aggregator`) gets the round priced at q = 1. The per-round (z, q_i) history is strategy
   state, checkpointed and restored. The engine selects a fixed number without replacement,
   for which Poisson-sampling accounting is the usual approximation, not a proof;
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
from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import HistoryEntry
from fedcore.dp.user_level import (
    inclusion_probability,
    noise_multiplier_for_adaptive_clipping,
    noise_multiplier_for_user_level,
    selected_per_round,
)
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Array, Params
from fedcore.strategy.base import Sampling
from fedcore.strategy.fedavg import FedAvg

_NOT_DP = ("clipped_fraction", "mean_update_norm")  # exact statistics: never published


class DPFedAvg:
    """FedAvg whose aggregate is clipped, noised and accounted at the user level.

    Args:
        noise_multiplier: z, the total noise multiplier accounted for (> 0).
        clip_norm: C, the initial L2 bound on each client's update.
        clients_per_round: m, expected clients per round (the fixed denominator).
        population: N, the declared population: plans z for a target, and caps each round's
            rate from below (q = selected / min(available, N)).
        over_selection: o, as the engine's selection: ceil(m(1 + o)) clients are asked.
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
        over_selection: float = 0.0,
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
        if selected_per_round(clients_per_round, over_selection) > population:
            raise ValueError(
                f"clients_per_round={clients_per_round} with over_selection={over_selection} "
                f"selects {selected_per_round(clients_per_round, over_selection)} clients per "
                f"round, more than population={population}: lower over_selection or declare "
                "the real population")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta}")
        self.noise_multiplier = noise_multiplier
        self.update_noise_multiplier = (
            noise_multiplier_for_adaptive_clipping(noise_multiplier, adaptive.count_noise_std)
            if adaptive is not None else noise_multiplier
        )
        self.clients_per_round = clients_per_round
        self.population = population
        self.over_selection = over_selection
        self.delta = delta
        self.adaptive = adaptive
        self._fedavg = FedAvg(local_epochs=local_epochs, batch_size=batch_size,
                              learning_rate=learning_rate, server_lr=server_lr)
        self._rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
        self._clip = AdaptiveClipState(clip_norm=float(clip_norm))
        self._accountant = PrivacyAccountant()

    @classmethod
    def for_target_epsilon(
        cls, *, target_epsilon: float, rounds: int, clients_per_round: int, population: int,
        over_selection: float = 0.0, delta: float = 1e-5, **kwargs: object,
    ) -> DPFedAvg:
        """The strategy whose z spends at most `target_epsilon` over `rounds` rounds when all of
        the declared population is available (fewer raise the ε the run reports)."""
        z = noise_multiplier_for_user_level(
            target_epsilon=target_epsilon, delta=delta, clients_per_round=clients_per_round,
            population=population, rounds=rounds, over_selection=over_selection,
        )
        return cls(noise_multiplier=z, clients_per_round=clients_per_round,
                   population=population, over_selection=over_selection, delta=delta,
                   **kwargs)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ state
    @property
    def clip_norm(self) -> float:
        """The clip norm the next round uses."""
        return self._clip.clip_norm

    @property
    def rounds_released(self) -> int:
        """Noisy aggregates released so far (what ε is accounted over)."""
        return self._accountant.steps

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        """The released rounds as Opacus' (z, q, steps), each at the rate it really had."""
        return self._accountant.history

    def epsilon(self) -> float:
        """User-level ε spent so far (0 before the first release)."""
        return self._accountant.epsilon(self.delta)

    def state_arrays(self) -> dict[str, Array]:
        """The clip norm and the accounting history (z, q, steps per entry), for checkpoints."""
        history = self._accountant.history
        return {"clip_norm": np.array(self._clip.clip_norm, np.float64),
                "rounds_released": np.array(self.rounds_released, np.int64),
                "user_noise_multipliers": np.array([e.noise_multiplier for e in history],
                                                   np.float64),
                "user_sample_rates": np.array([e.sample_rate for e in history], np.float64),
                "user_steps": np.array([e.steps for e in history], np.int64)}

    def load_state_arrays(self, state: dict[str, Array]) -> None:
        """Take back `state_arrays()`; an empty dict (a stateless run's snapshot) keeps ours.

        Raises:
            ValueError: the state is damaged, or predates per-round accounting (its released
                rounds' sampling rates are unknown, so no honest ε could be reported).
        """
        if not state:
            return
        clip, released = float(state["clip_norm"]), int(state["rounds_released"])
        if not (math.isfinite(clip) and clip > 0) or released < 0:
            raise ValueError(f"bad DP-FedAvg state: clip_norm={clip}, rounds_released={released}")
        if released and "user_sample_rates" not in state:
            raise ValueError(
                f"the DP-FedAvg state records {released} released rounds but not their sampling "
                "rates (a checkpoint from before per-round accounting): finish that run with the "
                "version that wrote it, or start a new run in another output directory")
        keys = ("user_noise_multipliers", "user_sample_rates", "user_steps")
        columns = [np.asarray(state.get(k, np.zeros(0))).ravel() for k in keys]
        history = [HistoryEntry(noise_multiplier=float(z), sample_rate=float(q), steps=int(n))
                   for z, q, n in zip(*columns, strict=True)]
        accountant = PrivacyAccountant(history=history)
        if accountant.steps != released:
            raise ValueError(f"bad DP-FedAvg state: {accountant.steps} accounted rounds, "
                             f"{released} released")
        self._clip, self._accountant = AdaptiveClipState(clip_norm=clip), accountant

    # ------------------------------------------------------------------ strategy
    def train_config(self, round_number: int) -> TrainConfig:
        """Plain local training: the privacy comes from the server's clip and noise."""
        return self._fedavg.train_config(round_number)

    def aggregator(self, round_number: int) -> Aggregator:
        """As `sampled_aggregator`, for a caller that cannot say how clients were sampled: the
        round is priced at q = 1 (every client in it), the only rate that holds regardless."""
        return self._aggregator(sample_rate=1.0)

    def sampled_aggregator(self, round_number: int, sampling: Sampling) -> Aggregator:
        """Clip to the current C, noise the sum, divide by m; releasing it spends one round at
        q = `inclusion_probability(selected, available, population)`."""
        return self._aggregator(sample_rate=inclusion_probability(
            selected=sampling.selected, available=sampling.available, population=self.population))

    def _aggregator(self, *, sample_rate: float) -> Aggregator:
        clip = dp_mean(clip_norm=self._clip.clip_norm,
                       noise_multiplier=self.update_noise_multiplier, rng=self._rng,
                       expected_clients=self.clients_per_round)
        return _Release(self, clip, sample_rate)

    def apply(self, params: Params, result: AggregateResult) -> dict[str, Array]:
        """`params + server_lr * noisy_mean_update`."""
        return self._fedavg.apply(params, result)

    def _release(self, clip: Clip, sample_rate: float) -> AggregateResult:
        inner = clip.result()
        used = self._clip.clip_norm
        measurements = {k: v for k, v in inner.measurements.items() if k not in _NOT_DP}
        if self.adaptive is not None:
            self._clip, adapt = next_clip_state(
                self._clip, clip.stats, config=self.adaptive,
                expected_clients=self.clients_per_round, rng=self._rng,
            )
            measurements.update(adapt)
        self._accountant.record(HistoryEntry(noise_multiplier=self.noise_multiplier,
                                             sample_rate=sample_rate, steps=1))
        measurements.update(
            user_epsilon=self.epsilon(), user_sample_rate=sample_rate, clip_norm=used,
            noise_std=self.update_noise_multiplier * used,
        )
        return dataclasses.replace(inner, measurements=measurements)


class _Release:
    """One round's aggregator: `Clip(GaussianNoise(WeightedMean()))`, released at most once."""

    def __init__(self, strategy: DPFedAvg, clip: Clip, sample_rate: float) -> None:
        self._strategy, self._clip, self._sample_rate = strategy, clip, sample_rate
        self._result: AggregateResult | None = None

    def add(self, update: dict[str, Array], weight: float) -> None:
        """Clip and fold one client's update (its weight is ignored: unit weights)."""
        if self._result is not None:
            raise ValueError("this round's aggregate was already released")
        self._clip.add(update, weight)

    def result(self) -> AggregateResult:
        """The noisy mean; the first call spends the round's privacy, later calls repeat it."""
        if self._result is None:
            self._result = self._strategy._release(self._clip, self._sample_rate)
        return self._result
