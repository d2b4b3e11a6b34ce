"""Coordinator configuration: TOML files read into typed dataclasses, flags on top.

A file's sections (`CoordinatorConfig`; the simulator's `SimulationConfig` inherits the run's,
`RunSections`) are read once by `fedcore.config.tables`. [secagg] is the engine's own
`SecureAggregationConfig`; [privacy] is one choice, made by the table present ([privacy.local]
or [privacy.user]); [buffered], when present, runs FedBuff instead of rounds; sections that map
onto several domain objects take their defaults from them. `plan_run` builds the run they describe (`RunPlan`) once, at start. Unknown keys
and bad values fail with the key's dotted name.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedcore.aggregate.dp_noise import AdaptiveClipping
from fedcore.config.strategies import OptimizerSection, RobustSection, with_server_side
from fedcore.config.tables import MOVED as MOVED
from fedcore.config.tables import SWITCH as SWITCH
from fedcore.config.tables import SWITCHED as SWITCHED
from fedcore.config.tables import ConfigError as ConfigError
from fedcore.config.tables import build as build
from fedcore.config.tables import default_of as default_of
from fedcore.config.tables import load_toml as load_toml
from fedcore.config.tables import toml_fields as toml_fields
from fedcore.engine.buffered import BufferedConfig
from fedcore.engine.config import (
    EngineConfig,
    Limits,
    SecureAggregationConfig,
    SelectionConfig,
)
from fedcore.engine.plan import RunPlan, check_buffered
from fedcore.protocol.messages import LocalDPConfig
from fedcore.strategy.base import Strategy
from fedcore.strategy.fedavg import FedAvg
from fedcore.strategy.scaffold import Scaffold
from fedcore.transport.probe import AddressError, split_address

if TYPE_CHECKING:
    from fedcore.strategy.dp_fedavg import DPFedAvg


class StrategyName(enum.Enum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"
    FEDADAGRAD = "fedadagrad"
    FEDADAM = "fedadam"
    FEDYOGI = "fedyogi"
    FEDAVGM = "fedavgm"
    SCAFFOLD = "scaffold"


class InitialModelFrom(enum.Enum):
    """Who supplies a fresh run's first model: the operator (`server.initial_model`, or a
    callable in the run plan), or, opted in, one authenticated client."""

    OPERATOR = "operator"
    CLIENT = "client"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundsConfig:
    """[rounds]: how many rounds and who takes part."""

    num_rounds: int = 10
    clients_per_round: int = default_of(SelectionConfig, "count")
    fraction: float = 1.0
    over_selection: float = default_of(SelectionConfig, "over_selection")
    min_results: int = default_of(SelectionConfig, "min_results")
    min_available: int = default_of(SelectionConfig, "min_available")
    round_timeout_s: float = default_of(EngineConfig, "round_timeout_s")
    eval_fraction: float = 1.0
    eval_every: int = default_of(EngineConfig, "eval_every")
    eval_timeout_s: float = default_of(EngineConfig, "eval_timeout_s")
    client_timeout_s: float = default_of(EngineConfig, "client_timeout_s")
    seed: int = default_of(EngineConfig, "seed")

    def __post_init__(self) -> None:
        # What the engine's SelectionConfig checks, said in this section's keys.
        if self.clients_per_round < 0:
            raise ConfigError(f"rounds.clients_per_round must be >= 0 (0: rounds.fraction of "
                              f"the available clients), got {self.clients_per_round}")
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"rounds.fraction must be in (0, 1] (or set "
                              f"rounds.clients_per_round), got {self.fraction}")
        if not 0 <= self.eval_fraction <= 1:
            raise ConfigError(f"rounds.eval_fraction must be in [0, 1] (0: no evaluation), "
                              f"got {self.eval_fraction}")
        _check_at_least(self, "rounds", 1, "num_rounds", "min_results", "min_available",
                        "eval_every")
        _check_at_least(self, "rounds", 0, "over_selection")
        _check_positive(self, "rounds", "round_timeout_s", "eval_timeout_s", "client_timeout_s")
        if self.min_results > self.min_available:
            raise ConfigError(
                f"rounds.min_results ({self.min_results}) cannot exceed rounds.min_available "
                f"({self.min_available}), or no round could succeed: lower min_results "
                "(--min-results) or raise min_available (--min-clients)")


@dataclass(frozen=True, slots=True, kw_only=True)
class BufferedSection:
    """[buffered]: asynchronous buffered aggregation (FedBuff, `BufferedConfig`) instead of
    rounds; the table's presence turns it on (docs/algorithms.md)."""

    buffer_size: int = default_of(BufferedConfig, "buffer_size")
    concurrency: int = default_of(BufferedConfig, "concurrency")
    num_updates: int = default_of(BufferedConfig, "num_updates")
    task_timeout_s: float = default_of(BufferedConfig, "task_timeout_s")
    max_staleness: int = default_of(BufferedConfig, "max_staleness")
    staleness_exponent: float = default_of(BufferedConfig, "staleness_exponent")
    eval_every: int = 1  # an operator's run reports accuracy, as [rounds] does (the engine: 0)
    eval_clients: int = default_of(BufferedConfig, "eval_clients")

    def __post_init__(self) -> None:
        self.config()  # a bad value fails as it is read, as "[buffered]: <key> must ..."

    def config(self) -> BufferedConfig:
        """The engine's settings these keys describe.

        Raises:
            ValueError: a value out of range, named by its key.
        """
        return BufferedConfig(
            buffer_size=self.buffer_size, concurrency=self.concurrency,
            num_updates=self.num_updates, task_timeout_s=self.task_timeout_s,
            max_staleness=self.max_staleness, staleness_exponent=self.staleness_exponent,
            eval_every=self.eval_every, eval_clients=self.eval_clients)


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyConfig:
    """[strategy]: the algorithm and the clients' local training settings."""

    name: StrategyName = StrategyName.FEDAVG
    local_epochs: int = default_of(FedAvg, "local_epochs")
    batch_size: int = default_of(FedAvg, "batch_size")
    learning_rate: float = default_of(FedAvg, "learning_rate")
    proximal_mu: float = default_of(FedAvg, "proximal_mu")
    server_lr: float = default_of(FedAvg, "server_lr")
    num_clients: int = 0  # SCAFFOLD's N; 0: simulation.clients in a simulation
    optimizer: OptimizerSection = field(default_factory=OptimizerSection)
    robust: RobustSection = field(default_factory=RobustSection)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """[server]: where to listen and where to write."""

    address: str = "0.0.0.0:8080"
    out_dir: str = "runs/server"
    initial_model: str = ""
    initial_model_from: InitialModelFrom = InitialModelFrom.OPERATOR
    model_spec: str = ""
    long_poll_s: float = 5.0
    max_payload_mb: float = 4096.0
    auth_token_file: str = ""
    metrics_port: int = 0
    metrics_address: str = "0.0.0.0"
    status_port: int = 0
    status_address: str = "127.0.0.1"
    run_store: str = "runs.sqlite"
    checkpoint: bool = True

    def __post_init__(self) -> None:
        try:
            split_address(self.address)
        except AddressError as err:
            raise ConfigError(f"server.address: {err}") from None
        _check_positive(self, "server", "long_poll_s", "max_payload_mb")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(
                f"server.metrics_port must be in 0..65535 (0: off), got {self.metrics_port}"
            )
        if self.initial_model and self.initial_model_from is InitialModelFrom.CLIENT:
            raise ConfigError("server.initial_model and server.initial_model_from = \"client\" "
                              "exclude each other: the first model is the operator's or a client's")
        if not 0 <= self.status_port <= 65535:
            raise ConfigError(
                f"server.status_port (--status-port) must be in 0..65535 (0: off), "
                f"got {self.status_port}"
            )


def _check_at_least(table: object, section: str, low: float, *names: str) -> None:
    """Refuse a value of `table` below `low`, naming its key (`section.name`)."""
    for name in names:
        value = getattr(table, name)
        if not value >= low:
            raise ConfigError(f"{section}.{name} must be >= {low:g}, got {value}")


def _check_positive(table: object, section: str, *names: str) -> None:
    """Refuse a value of `table` that is not > 0 (e.g. a negative duration), naming its key."""
    for name in names:
        value = getattr(table, name)
        if not value > 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {value}")


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """[tls]: PEM files; `cert` and `key` turn TLS on, `client_ca` also requires client certs.

    With client certificates, `bind_client_ids` (default on) admits a client only under an id
    that its certificate names (its CN or a DNS SAN)."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""
    bind_client_ids: bool = True

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ConfigError("tls.cert and tls.key go together: set both or neither")
        if self.client_ca and not self.cert:
            raise ConfigError("tls.client_ca (mutual TLS) needs tls.cert and tls.key")


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalDPSection:
    """[privacy.local]: local DP-SGD on every client (Opacus), configured by the coordinator.

    Set `noise_multiplier`, or `target_epsilon` (also each client's budget) from which clients
    derive the noise for `rounds.num_rounds` rounds (the `LocalDPConfig` it becomes).
    """

    noise_multiplier: float = default_of(LocalDPConfig, "noise_multiplier")
    target_epsilon: float = default_of(LocalDPConfig, "target_epsilon")
    max_grad_norm: float = default_of(LocalDPConfig, "max_grad_norm")
    delta: float = default_of(LocalDPConfig, "delta")

    def local_dp_config(self, planned_rounds: int) -> LocalDPConfig:
        """The clients' DP-SGD settings over `planned_rounds` rounds."""
        try:
            return LocalDPConfig(
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=self.max_grad_norm,
                target_epsilon=self.target_epsilon,
                delta=self.delta,
                planned_rounds=planned_rounds if self.target_epsilon > 0 else 0,
            )
        except ValueError as err:
            raise ConfigError(f"[privacy.local]: {err}") from err


@dataclass(frozen=True, slots=True, kw_only=True)
class UserDPSection:
    """[privacy.user]: user-level DP-FedAvg, clipped and noised by the coordinator (`DPFedAvg`).

    Set `noise_multiplier`, or `target_epsilon` spent over `rounds.num_rounds`. Needs
    `rounds.clients_per_round` (the fixed denominator) and `population` (the declared N: it
    plans z for a target; each round is accounted at selected / min(available, N), over-selection
    included, as the engine observes it). `count_noise_std` 0 means clients_per_round / 20.
    """

    noise_multiplier: float = 0.0
    target_epsilon: float = 0.0
    clip_norm: float = 1.0
    adaptive: bool = False
    target_quantile: float = default_of(AdaptiveClipping, "target_quantile")
    clip_learning_rate: float = default_of(AdaptiveClipping, "learning_rate")
    count_noise_std: float = 0.0
    population: int = 0
    delta: float = 1e-5

    def strategy(self, rounds: RoundsConfig, s: StrategyConfig) -> DPFedAvg:
        """The DP-FedAvg strategy these settings describe."""
        # Opacus' accountants (and with them torch) load only for a run with user-level DP:
        # an idle coordinator does not load torch.
        from fedcore.dp.user_level import noise_multiplier_for_user_level
        from fedcore.strategy.dp_fedavg import DPFedAvg

        if (self.noise_multiplier > 0) == (self.target_epsilon > 0):
            raise ConfigError("[privacy.user]: set exactly one of noise_multiplier and "
                              "target_epsilon")
        if rounds.clients_per_round < 1:
            raise ConfigError("[privacy.user] needs rounds.clients_per_round (the fixed "
                              "denominator)")
        if s.name is StrategyName.FEDPROX:
            raise ConfigError("[privacy.user] runs FedAvg (or a server optimizer on its "
                              "aggregate); strategy.name is fedprox")
        m = rounds.clients_per_round
        try:
            adaptive = AdaptiveClipping(
                count_noise_std=self.count_noise_std or m / 20,
                target_quantile=self.target_quantile, learning_rate=self.clip_learning_rate,
            ) if self.adaptive else None
            z = self.noise_multiplier or noise_multiplier_for_user_level(
                target_epsilon=self.target_epsilon, delta=self.delta, clients_per_round=m,
                population=self.population, rounds=rounds.num_rounds,
                over_selection=rounds.over_selection,
            )
            return DPFedAvg(noise_multiplier=z, clip_norm=self.clip_norm, clients_per_round=m,
                            population=self.population, over_selection=rounds.over_selection,
                            delta=self.delta, adaptive=adaptive,
                            local_epochs=s.local_epochs, batch_size=s.batch_size,
                            learning_rate=s.learning_rate, server_lr=s.server_lr)
        except ValueError as err:
            raise ConfigError(f"[privacy.user]: {err}") from err


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyConfig:
    """[privacy]: one choice of DP mechanism on top of training, made by which table is
    present: [privacy.local] (DP-SGD on the clients) or [privacy.user] (DP-FedAvg on the
    coordinator); neither is no such DP. Distributed DP under secure aggregation is
    [secagg.dp], since it exists only there."""

    local: LocalDPSection | None = None
    user: UserDPSection | None = None

    def __post_init__(self) -> None:
        if self.local is not None and self.user is not None:
            raise ConfigError("[privacy] is one choice: [privacy.local] or [privacy.user], "
                              "not both")

    @property
    def mechanism(self) -> LocalDPSection | UserDPSection | None:
        """The mechanism chosen, or None."""
        return self.local or self.user


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSections:
    """The sections that describe a run, shared by the coordinator's file
    (`CoordinatorConfig`) and the simulator's (`fedcore.sim.config.SimulationConfig`)."""

    rounds: RoundsConfig = field(default_factory=RoundsConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    secagg: SecureAggregationConfig | None = field(default=None, metadata=SWITCHED)
    buffered: BufferedSection | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinatorConfig(RunSections):
    """The whole coordinator configuration file: [server], [tls], [limits] (the engine's own
    `Limits` on what untrusted clients may send) and the run's sections."""

    server: ServerConfig = field(default_factory=ServerConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerPlan:
    """A coordinator file as read (`config`) and the run it describes (`run`), built once."""

    config: CoordinatorConfig
    run: RunPlan


def plan_run(
    sections: RunSections, *, max_payload_bytes: int = 4 << 30, limits: Limits | None = None
) -> RunPlan:
    """The engine settings and strategy that `sections` describe (reads the roster, if any).

    Raises:
        ConfigError: a value is invalid or settings conflict; the message names the key.
    """
    plan = RunPlan(engine=_engine_config(sections, max_payload_bytes, limits or Limits()),
                   strategy=_strategy(sections))
    if sections.buffered is None:
        return plan
    plan = dataclasses.replace(plan, buffered=sections.buffered.config())
    try:
        check_buffered(plan)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    _check_buffered_sections(sections)
    return plan


# What a buffered run reads of [rounds]: how long a silent client counts as connected.
_ROUNDS_USED_BY_BUFFERED = frozenset({"client_timeout_s"})


def _check_buffered_sections(sections: RunSections) -> None:
    """Refuse [rounds] keys that a buffered run would silently ignore, and DP-SGD budgets
    planned over rounds it does not have."""
    defaults = RoundsConfig()
    unused = [f"rounds.{f.name}" for f in dataclasses.fields(RoundsConfig)
              if f.name not in _ROUNDS_USED_BY_BUFFERED
              and getattr(sections.rounds, f.name) != getattr(defaults, f.name)]
    if unused:
        raise ConfigError(
            f"{', '.join(unused)}: [buffered] runs without rounds, so these have no effect; "
            "remove them (buffered.num_updates sets the run's length, buffered.concurrency the "
            "tasks out at once, buffered.task_timeout_s a task's deadline)")
    local = sections.privacy.local
    if local is not None and local.target_epsilon > 0:
        raise ConfigError("privacy.local.target_epsilon plans the clients' noise over "
                          "rounds.num_rounds rounds, which a buffered run ([buffered]) does not "
                          "have: set privacy.local.noise_multiplier instead")


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> ServerPlan:
    """Read `path` (TOML; None for defaults) once, apply dotted-key `overrides`, and build the
    run it describes, so every bad value fails here, at start."""
    config = build(CoordinatorConfig, load_toml(path, overrides), "")
    max_payload = int(config.server.max_payload_mb * (1 << 20))
    return ServerPlan(config=config,
                      run=plan_run(config, max_payload_bytes=max_payload, limits=config.limits))


def _engine_config(sections: RunSections, max_payload_bytes: int, limits: Limits) -> EngineConfig:
    r = sections.rounds
    try:
        train = SelectionConfig(
            count=r.clients_per_round,
            fraction=0.0 if r.clients_per_round else r.fraction,
            over_selection=r.over_selection,
            min_results=r.min_results,
            min_available=r.min_available,
        )
        evaluate = (
            SelectionConfig(fraction=r.eval_fraction, min_results=1, min_available=1)
            if r.eval_fraction > 0
            else None
        )
        return EngineConfig(
            num_rounds=r.num_rounds, train=train, evaluate=evaluate, eval_every=r.eval_every,
            round_timeout_s=r.round_timeout_s, eval_timeout_s=r.eval_timeout_s,
            client_timeout_s=r.client_timeout_s, seed=r.seed,
            max_payload_bytes=max_payload_bytes, secagg=sections.secagg, limits=limits,
        )
    except ValueError as err:
        raise ConfigError(f"[rounds]: {err}") from err


def _strategy(sections: RunSections) -> Strategy:
    s = sections.strategy
    return with_server_side(_base_strategy(sections), name=s.name.value, server_lr=s.server_lr,
                            optimizer=s.optimizer, robust=s.robust,
                            secure=sections.secagg is not None,
                            min_results=sections.rounds.min_results)


def _base_strategy(sections: RunSections) -> Strategy:
    s = sections.strategy
    user, local = sections.privacy.user, sections.privacy.local
    if s.name is StrategyName.SCAFFOLD:
        return _scaffold(sections)
    if user is not None:
        if sections.secagg is not None:
            raise ConfigError("[privacy.user] noises what the coordinator sees, which secure "
                              "aggregation hides; use distributed DP ([secagg.dp]) instead")
        return user.strategy(sections.rounds, s)
    if s.name is StrategyName.FEDPROX and not s.proximal_mu > 0:
        raise ConfigError("strategy.proximal_mu must be > 0 for fedprox")
    try:
        return FedAvg(
            local_epochs=s.local_epochs,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            proximal_mu=s.proximal_mu if s.name is StrategyName.FEDPROX else 0.0,
            server_lr=s.server_lr,
            local_dp=None if local is None else local.local_dp_config(
                sections.rounds.num_rounds),
        )
    except ConfigError:  # [privacy.local]'s, named already
        raise
    except ValueError as err:
        raise ConfigError(f"[strategy]: {err}") from err


def _scaffold(sections: RunSections) -> Strategy:
    """SCAFFOLD (`fedcore.strategy.scaffold`): N from strategy.num_clients, else the simulated
    population; no DP, no robust rule (refused in `with_server_side`)."""
    s = sections.strategy
    if sections.privacy.local is not None or sections.privacy.user is not None:
        raise ConfigError("strategy.name = 'scaffold' does not combine with [privacy.local] or "
                          "[privacy.user] here: remove one of them")
    population = getattr(getattr(sections, "simulation", None), "clients", 0)
    num_clients = s.num_clients or population
    if num_clients < 1:
        raise ConfigError("strategy.name = 'scaffold' needs strategy.num_clients, the number of "
                          "clients in the federation (SCAFFOLD moves its server control "
                          "variate by results / num_clients of their mean change)")
    try:
        return Scaffold(num_clients=num_clients, local_epochs=s.local_epochs,
                        batch_size=s.batch_size, learning_rate=s.learning_rate,
                        server_lr=s.server_lr)
    except ValueError as err:
        raise ConfigError(f"[strategy]: {err}") from err
