"""[strategy.optimizer] and [strategy.robust]: server optimizers and robust aggregation on top of
the run's base strategy (FedAvg, FedProx or DP-FedAvg), and the combinations refused at start.

    [strategy]
    name = "fedadam"          # fedavg, fedprox, fedadagrad, fedadam, fedyogi, fedavgm, scaffold
    [strategy.optimizer]      # Reddi et al. 2021's hyper-parameters (eta and tau are tuned)
    eta = 0.01
    [strategy.robust]
    aggregator = "median"     # mean, median, trimmed_mean, krum, norm_bound
"""

from __future__ import annotations

from dataclasses import dataclass

from fedcore.config.tables import ConfigError
from fedcore.strategy.base import Strategy
from fedcore.strategy.fedavg import FedAvg
from fedcore.strategy.robust import Defence, RobustAggregation
from fedcore.strategy.scaffold import Scaffold
from fedcore.strategy.server_opt import Rule, ServerOptimizer

OPTIMIZERS = {rule.value: rule for rule in Rule}


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizerSection:
    """[strategy.optimizer]: the server optimizer's hyper-parameters (`ServerOptimizer`).

    FedAdagrad, FedAdam and FedYogi use eta, beta_1 (β1), beta_2 (β2) and tau; FedAvgM uses `momentum` and
    steps with strategy.server_lr.
    """

    eta: float = 1e-2
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 1e-3
    momentum: float = 0.9


@dataclass(frozen=True, slots=True, kw_only=True)
class RobustSection:
    """[strategy.robust]: how plain rounds combine updates (`RobustAggregation`)."""

    aggregator: Defence = Defence.MEAN
    trim_fraction: float = 0.1
    byzantine: int = 0
    krum_select: int = 0
    norm_bound: float = 1.0


def with_server_side(
    base: Strategy, *, name: str, server_lr: float, optimizer: OptimizerSection,
    robust: RobustSection, secure: bool, min_results: int = 1,
) -> Strategy:
    """`base` with the robust aggregator and the server optimizer the sections choose.

    Raises:
        ConfigError: a bad value, or a defence that cannot work with the run's other settings.
    """
    strategy = base
    if robust.aggregator is not Defence.MEAN:
        if isinstance(base, Scaffold):
            raise ConfigError(f"strategy.robust.aggregator = {robust.aggregator.value!r} is not "
                              "combined with SCAFFOLD (its control variates travel with the "
                              "updates): use aggregator = 'mean'")
        if secure:
            raise ConfigError(_SECURE_REFUSAL[robust.aggregator.needs_every_update].format(
                robust.aggregator.value))
        if robust.aggregator is Defence.KRUM and min_results < 2 * robust.byzantine + 3:
            raise ConfigError(
                f"strategy.robust.byzantine = {robust.byzantine} needs at least "
                f"{2 * robust.byzantine + 3} updates per round (Krum: n >= 2f + 3), but "
                f"rounds.min_results is {min_results}: raise rounds.min_results or lower byzantine")
        if not isinstance(base, FedAvg):
            raise ConfigError(f"strategy.robust.aggregator = {robust.aggregator.value!r} replaces "
                              "the weighted mean, which [privacy.user] (DP-FedAvg) clips and "
                              "noises itself: use one or the other")
        try:
            strategy = RobustAggregation(
                defence=robust.aggregator, inner=base, trim_fraction=robust.trim_fraction,
                byzantine=robust.byzantine, krum_select=robust.krum_select,
                norm_bound=robust.norm_bound)
        except ValueError as err:
            raise ConfigError(f"[strategy.robust]: {err}") from err
    rule = OPTIMIZERS.get(name)
    if rule is None:
        return strategy
    try:
        if rule is Rule.MOMENTUM:
            return ServerOptimizer(rule, inner=strategy, eta=server_lr, beta1=optimizer.momentum)
        return ServerOptimizer(rule, inner=strategy, eta=optimizer.eta, beta1=optimizer.beta_1,
                               beta2=optimizer.beta_2, tau=optimizer.tau)
    except ValueError as err:
        raise ConfigError(f"[strategy.optimizer]: {err}") from err


_SECURE_REFUSAL = {
    True: ("strategy.robust.aggregator = {!r} must see every client's update (and holds all n "
           "of them, O(n x model) memory), but under [secagg] the coordinator sees only their "
           "sum: turn [secagg] off for robust aggregation, or keep it and rely on the clients' "
           "bounds (secagg.clip, secagg.dp.clip_norm)"),
    False: ("strategy.robust.aggregator = {!r}: under [secagg] the coordinator cannot clip "
            "updates it never sees; honest clients bound each coordinate to secagg.clip before "
            "masking, and with [secagg.dp] their update's L2 norm to secagg.dp.clip_norm: set "
            "those instead (see docs/strategies.md)"),
}
