"""A client's privacy floor: the weakest privacy parameters it accepts from a coordinator.

The coordinator chooses every privacy parameter of a task (noise multipliers, δ, target ε,
whether updates are masked and signed). A coordinator that lies or is misconfigured could ask
for a noise multiplier of 0.01 (distributed ε of about 10^4 for one round). A client with a
floor checks each TRAIN task against it before it trains and declines, for good and with the
reason, any task that falls short (`TaskHandler`, `fedcore.client.loop`).

What the floor can and cannot check:
- stated parameters, with no app involved (`PrivacyFloor.refusal`): local DP-SGD's and
  distributed DP's noise multiplier and δ, local DP's target ε, one distributed-DP round's ε
  at the worst case the threshold allows (exactly t survivors), secure aggregation and signing;
- what an app's own accountant would reach after the task (`PrivacyFloor.plan_refusal`, for
  apps that implement `PrivatePlanner`, e.g. `TorchApp`): the noise multiplier it derives from
  a target ε, and its total ε after the task;
- not: distributed-DP ε composed over the rounds this client took part in (the floor bounds
  each round's), nor DP a `FunctionalApp` adds itself (its own code must check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from fedcore.dp.distributed import gaussian_approx_epsilon, skellam_epsilon
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig, IntegerNoise
from fedcore.protocol.messages import LocalDPConfig, SecAggSetup, Task, TaskKind, TrainConfig

DEFAULT_MIN_NOISE_MULTIPLIER = 0.5
DEFAULT_MAX_EPSILON = 10.0
DEFAULT_MAX_DELTA = 1e-5


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyFloor:
    """The weakest privacy a client accepts; tasks below it are declined for good.

    The defaults are what a production client should refuse anyway: at a noise multiplier
    below 0.5 one unsampled release already costs ε ≈ 10.7 at δ = 1e-5 (0.01 costs ≈ 10^4);
    ε above 10 is past what DP-SGD practice calls meaningful; δ above 1e-5 (fedcore's default)
    lets a coordinator shrink every reported ε by raising δ. They do not require secure
    aggregation or signing, which the federation must offer first.

    Args:
        min_noise_multiplier: lowest noise multiplier of local DP-SGD (stated, or derived by
            the app from a target ε) and of distributed DP, when the task asks for DP.
        max_epsilon: most ε a task may imply: local DP's target ε and the app's accountant
            after the task; one distributed-DP round's ε.
        max_delta: largest δ at which a task may state ε.
        require_secure_aggregation: decline TRAIN tasks whose update the coordinator would see.
        require_signed: decline secure-aggregation rounds that are not signed (needs the
            client's `secagg_identity`).
    """

    min_noise_multiplier: float = DEFAULT_MIN_NOISE_MULTIPLIER
    max_epsilon: float = DEFAULT_MAX_EPSILON
    max_delta: float = DEFAULT_MAX_DELTA
    require_secure_aggregation: bool = False
    require_signed: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_noise_multiplier) and self.min_noise_multiplier >= 0):
            raise ValueError(f"min_noise_multiplier must be a finite number >= 0, got "
                             f"{self.min_noise_multiplier}")
        if not self.max_epsilon > 0:
            raise ValueError(f"max_epsilon must be > 0 (math.inf: no cap), got {self.max_epsilon}")
        if not 0 < self.max_delta < 1:
            raise ValueError(f"max_delta must be in (0, 1), got {self.max_delta}")

    def refusal(self, task: Task) -> str:
        """Why this client declines `task` on its stated parameters; "" when it meets the floor."""
        if task.kind is not TaskKind.TRAIN:
            return ""
        setup = task.secagg if isinstance(task.secagg, SecAggSetup) else None
        reasons = [
            self._transport_refusal(setup),
            self._local_refusal(task.train.local_dp),
            self._distributed_refusal(setup),
        ]
        return next((r for r in reasons if r), "")

    def plan_refusal(self, plan: LocalDPPlan) -> str:
        """Why this client declines a DP-SGD task its app planned; "" when it meets the floor."""
        if plan.noise_multiplier < self.min_noise_multiplier:
            return (f"{_PREFIX}: local DP-SGD noise multiplier {plan.noise_multiplier:.3g} (derived "
                    f"from the task's target epsilon) is below this client's minimum "
                    f"{self.min_noise_multiplier:g}")
        if plan.epsilon_after > self.max_epsilon:
            return (f"{_PREFIX}: local DP-SGD would raise this client's epsilon from "
                    f"{plan.epsilon_spent:.3f} to {plan.epsilon_after:.3f} (delta="
                    f"{plan.delta:g}), above its maximum {self.max_epsilon:g}")
        return ""

    def _transport_refusal(self, setup: SecAggSetup | None) -> str:
        if setup is None and (self.require_secure_aggregation or self.require_signed):
            return (f"{_PREFIX}: the task sends the update without secure aggregation (the "
                    "coordinator would see it); this client requires secure aggregation")
        if setup is not None and self.require_signed and not setup.participants:
            return (f"{_PREFIX}: the secure-aggregation round is unsigned; this client takes part "
                    "in signed rounds only")
        return ""

    def _local_refusal(self, dp: LocalDPConfig | None) -> str:
        if dp is None:
            return ""
        if dp.noise_multiplier > 0 and dp.noise_multiplier < self.min_noise_multiplier:
            return self._noise_reason("local DP-SGD", dp.noise_multiplier)
        if dp.delta > self.max_delta:
            return self._delta_reason("local DP-SGD", dp.delta)
        if dp.target_epsilon > self.max_epsilon:
            return (f"{_PREFIX}: local DP-SGD target epsilon {dp.target_epsilon:g} is above this "
                    f"client's maximum {self.max_epsilon:g}")
        return ""

    def _distributed_refusal(self, setup: SecAggSetup | None) -> str:
        dp = setup.distributed_dp if setup is not None else None
        if setup is None or dp is None:
            return ""
        if dp.noise_multiplier < self.min_noise_multiplier:
            return self._noise_reason("distributed DP", dp.noise_multiplier)
        if dp.delta > self.max_delta:
            return self._delta_reason("distributed DP", dp.delta)
        try:
            eps = round_epsilon(dp, setup)
        except ValueError as err:
            return f"{_PREFIX}: unusable distributed DP settings: {err}"
        if eps > self.max_epsilon:
            return (f"{_PREFIX}: one distributed-DP round costs epsilon {eps:.3g} (delta="
                    f"{dp.delta:g}, noise multiplier {dp.noise_multiplier:g}, threshold "
                    f"{setup.spec.config.threshold}), above this client's maximum "
                    f"{self.max_epsilon:g}")
        return ""

    def _noise_reason(self, mechanism: str, noise: float) -> str:
        return (f"{_PREFIX}: {mechanism} noise multiplier {noise:g} is below this client's "
                f"minimum {self.min_noise_multiplier:g}")

    def _delta_reason(self, mechanism: str, delta: float) -> str:
        return (f"{_PREFIX}: {mechanism} delta {delta:g} is above this client's maximum "
                f"{self.max_delta:g}")


_PREFIX = "privacy floor"


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalDPPlan:
    """What a DP-SGD task would do to a client's privacy, worked out before training."""

    noise_multiplier: float
    epsilon_spent: float
    epsilon_after: float
    delta: float


@runtime_checkable
class PrivatePlanner(Protocol):
    """An app that can say, before training, what a task's local DP-SGD would cost it."""

    def plan_local_dp(self, config: TrainConfig) -> LocalDPPlan | None:
        """The plan for `config`'s local DP (None when the task asks for none).

        Raises:
            ValueError: the task's DP settings cannot be planned (e.g. no noise reaches them).
        """
        ...


def round_epsilon(dp: DistributedDPConfig, setup: SecAggSetup) -> float:
    """ε of one distributed-DP round of `setup` with exactly t survivors (the worst case).

    Raises:
        ValueError: the settings do not fit the round's bit width (`NoisyEncoding.for_round`).
    """
    encoding = NoisyEncoding.for_round(dp, setup.spec.config, setup.spec.dim)
    if dp.kind is IntegerNoise.SKELLAM:
        return skellam_epsilon(encoding.noise, dim=encoding.dim, rounds=1, delta=dp.delta)
    return gaussian_approx_epsilon(encoding.noise, sample_rate=1.0, rounds=1, delta=dp.delta)
