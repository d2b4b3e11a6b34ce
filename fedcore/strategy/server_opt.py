"""Server optimizers: FedAdagrad, FedAdam, FedYogi (Reddi et al. 2021) and FedAvgM (Hsu et al. 2019).

They act on the round's aggregate only: the pseudo-gradient is the mean client update
Δ_t = mean_i(x_i - x_t) (the clients' updates are already local model minus global model), so
whatever produced Δ_t — a plain weighted mean, a robust aggregator, DP-FedAvg's clipped and
noised mean, or the exact sum of secure aggregation — the optimizer works unchanged. Clients
train exactly as under FedAvg.

Reddi et al. 2021, "Adaptive Federated Optimization", Algorithm 2 (no bias correction):

    m_t = β1 m_{t-1} + (1 - β1) Δ_t
    v_t = v_{t-1} + Δ_t²                                    (FedAdagrad)
    v_t = v_{t-1} - (1 - β2) Δ_t² sign(v_{t-1} - Δ_t²)      (FedYogi)
    v_t = β2 v_{t-1} + (1 - β2) Δ_t²                        (FedAdam)
    x_{t+1} = x_t + η m_t / (√v_t + τ)

with m_{-1} = 0 and v_{-1} = τ² (the paper's "v_{-1} ≥ τ²"). The paper fixes β1 = 0.9 and
β2 = 0.99 and tunes η and τ per task on grids (η in 10^{-3}..10^{1/2}, τ in 10^{-5}..10^{-1});
the defaults here, η = 10^{-2} and τ = 10^{-3}, are a starting point, not a tuned value.

FedAvgM (Hsu et al. 2019, "Measuring the effects of non-identical data distribution"): server
momentum v_t = β v_{t-1} + Δ_t, x_{t+1} = x_t + η v_t (β = 0.9, η = 1 by default; the effective
step is η / (1 - β), so Hsu et al. lower η as β grows).

The moments are the strategy's state (`state_arrays`): the engine checkpoints them after every
round and `--resume` restores them, so a resumed run follows the same trajectory.
"""

from __future__ import annotations

import enum
import math
from typing import Final

import numpy as np
import numpy.typing as npt

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Array, Params
from fedcore.protocol.update import apply_mean
from fedcore.strategy.base import SampledStrategy, Sampling, StatefulStrategy, Strategy
from fedcore.strategy.fedavg import FedAvg

_FIRST: Final = "server_opt.m."  # state keys: first moment (or momentum) per tensor
_SECOND: Final = "server_opt.v."  # second moment per tensor
_INNER: Final = "inner."  # the wrapped strategy's own state, if any
F64 = npt.NDArray[np.float64]


class Rule(enum.Enum):
    """The second-moment rule of Algorithm 2 (or FedAvgM's plain momentum)."""

    ADAGRAD = "fedadagrad"
    ADAM = "fedadam"
    YOGI = "fedyogi"
    MOMENTUM = "fedavgm"


class ServerOptimizer:
    """A strategy that runs `inner` (FedAvg by default) and steps the model with a server
    optimizer on the inner aggregate instead of adding it.

    Args:
        rule: which optimizer.
        inner: what clients do and how their updates are combined (its `apply` is not used).
        eta: η, the server learning rate.
        beta1: β1 (the momentum β for FedAvgM).
        beta2: β2 (FedAdam, FedYogi).
        tau: τ, the adaptivity: added to √v and the initial v is τ².
    """

    def __init__(
        self,
        rule: Rule,
        *,
        inner: Strategy | None = None,
        eta: float = 1e-2,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
    ) -> None:
        for name, value in (("eta", eta), ("tau", tau)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")
        for name, value in (("beta1", beta1), ("beta2", beta2)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        self.rule = rule
        self.inner: Strategy = inner if inner is not None else FedAvg()
        self.eta, self.beta1, self.beta2, self.tau = float(eta), float(beta1), float(beta2), float(tau)
        self._m: dict[str, F64] = {}
        self._v: dict[str, F64] = {}

    # ------------------------------------------------------------------ strategy
    def train_config(self, round_number: int) -> TrainConfig:
        """The inner strategy's local training settings."""
        return self.inner.train_config(round_number)

    def aggregator(self, round_number: int) -> Aggregator:
        """The inner strategy's aggregator: its result is the pseudo-gradient Δ_t."""
        return self.inner.aggregator(round_number)

    def sampled_aggregator(self, round_number: int, sampling: Sampling) -> Aggregator:
        """As `aggregator`, telling a sampled inner strategy (DP-FedAvg) how clients were drawn."""
        if isinstance(self.inner, SampledStrategy):
            return self.inner.sampled_aggregator(round_number, sampling)
        return self.inner.aggregator(round_number)

    def apply(self, params: Params, result: AggregateResult) -> dict[str, Array]:
        """One optimizer step: update the moments with Δ_t = `result.update`, then move `params`.

        Moments are kept in float64; the new model keeps each tensor's dtype. Integer and
        boolean tensors (counters, masks) have no gradient to adapt to: they take the mean
        update as FedAvg does (`fedcore.protocol.update.apply_mean`) and keep no moments.

        Raises:
            ValueError: the aggregate's names or shapes differ from the model's (nothing changes).
        """
        for name, value in params.items():
            if name not in result.update or np.shape(result.update[name]) != np.shape(value):
                raise ValueError(f"the aggregate has no tensor {name!r} of shape "
                                 f"{np.shape(value)}; it must match the model")
        m_new: dict[str, F64] = {}
        v_new: dict[str, F64] = {}
        out: dict[str, Array] = {}
        for name, value in params.items():
            if not np.issubdtype(value.dtype, np.floating):
                out[name] = apply_mean(value, result.update[name])
                continue
            delta: F64 = np.asarray(result.update[name], np.float64)
            m, v = self._moments(name, delta.shape)
            if self.rule is Rule.MOMENTUM:
                m = self.beta1 * m + delta
                step = self.eta * m
            else:
                m = self.beta1 * m + (1 - self.beta1) * delta
                v = self._second(v, delta * delta)
                step = self.eta * m / (np.sqrt(v) + self.tau)
                v_new[name] = v
            m_new[name] = m
            out[name] = (np.asarray(value, np.float64) + step).astype(value.dtype, copy=False)
        self._m, self._v = m_new, v_new
        return out

    def _moments(self, name: str, shape: tuple[int, ...]) -> tuple[F64, F64]:
        m = self._m.get(name)
        v = self._v.get(name)
        if m is None or m.shape != shape:
            m = np.zeros(shape, np.float64)
        if v is None or v.shape != shape:
            v = np.full(shape, self.tau * self.tau, np.float64)
        return m, v

    def _second(self, v: F64, g2: F64) -> F64:
        match self.rule:
            case Rule.ADAGRAD:
                return v + g2
            case Rule.ADAM:
                return self.beta2 * v + (1 - self.beta2) * g2
            case Rule.YOGI:
                return v - (1 - self.beta2) * g2 * np.sign(v - g2)
        raise AssertionError(self.rule)

    # ------------------------------------------------------------------ state
    def state_arrays(self) -> dict[str, Array]:
        """The moments (and the inner strategy's state), for checkpoints."""
        state: dict[str, Array] = {_FIRST + k: v for k, v in self._m.items()}
        state.update({_SECOND + k: v for k, v in self._v.items()})
        if isinstance(self.inner, StatefulStrategy):
            state.update({_INNER + k: v for k, v in self.inner.state_arrays().items()})
        return state

    def load_state_arrays(self, state: dict[str, Array]) -> None:
        """Take back `state_arrays()` (an empty dict, a fresh run's, keeps the current state).

        Raises:
            ValueError: a key this optimizer does not write, or a non-finite moment (nothing
                changes).
        """
        m: dict[str, F64] = {}
        v: dict[str, F64] = {}
        inner: dict[str, Array] = {}
        for key, value in state.items():
            if key.startswith(_INNER):
                inner[key[len(_INNER):]] = value
                continue
            if key.startswith(_FIRST):
                target, name = m, key[len(_FIRST):]
            elif key.startswith(_SECOND) and self.rule is not Rule.MOMENTUM:
                target, name = v, key[len(_SECOND):]
            else:
                raise ValueError(f"state key {key!r} is not {self.rule.value}'s: the checkpoint "
                                 "was written by another strategy; resume with the strategy "
                                 "that wrote it or start a new run in another directory")
            array = np.array(value, np.float64)
            if not np.all(np.isfinite(array)) or (target is v and np.any(array < 0)):
                raise ValueError(f"state {key!r} holds non-finite or negative values")
            target[name] = array
        if inner:
            if not isinstance(self.inner, StatefulStrategy):
                raise ValueError("the checkpoint holds an inner strategy's state this run has not")
            self.inner.load_state_arrays(inner)
        if m or v:
            self._m, self._v = m, v


def FedAdagrad(**kwargs: object) -> ServerOptimizer:
    """Reddi et al.'s FedAdagrad: v_t = v_{t-1} + Δ_t²."""
    return ServerOptimizer(Rule.ADAGRAD, **kwargs)  # type: ignore[arg-type]


def FedAdam(**kwargs: object) -> ServerOptimizer:
    """Reddi et al.'s FedAdam: v_t = β2 v_{t-1} + (1 - β2) Δ_t²."""
    return ServerOptimizer(Rule.ADAM, **kwargs)  # type: ignore[arg-type]


def FedYogi(**kwargs: object) -> ServerOptimizer:
    """Reddi et al.'s FedYogi: v_t = v_{t-1} - (1 - β2) Δ_t² sign(v_{t-1} - Δ_t²)."""
    return ServerOptimizer(Rule.YOGI, **kwargs)  # type: ignore[arg-type]


def FedAvgM(*, momentum: float = 0.9, server_lr: float = 1.0,
            inner: Strategy | None = None) -> ServerOptimizer:
    """Hsu et al.'s FedAvgM: v_t = β v_{t-1} + Δ_t, x_{t+1} = x_t + η v_t."""
    return ServerOptimizer(Rule.MOMENTUM, inner=inner, eta=server_lr, beta1=momentum)
