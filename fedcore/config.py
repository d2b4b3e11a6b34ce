"""Coordinator configuration: TOML files read into typed dataclasses, flags on top.

Unknown keys and values of the wrong type fail at start with the key's dotted name.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from fedcore.errors import FedcoreError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from fedcore.aggregate.dp_noise import AdaptiveClipping
from fedcore.engine.config import (
    CLIENT_TIMEOUT_S,
    EVAL_TIMEOUT_S,
    ROUND_TIMEOUT_S,
    EngineConfig,
    SecureAggregationConfig,
    SelectionConfig,
)
from fedcore.engine.plan import RunPlan
from fedcore.messages import LocalDPConfig
from fedcore.secagg.roster import Roster, RosterError
from fedcore.strategy.base import Strategy
from fedcore.strategy.fedavg import FedAvg

if TYPE_CHECKING:
    from fedcore.strategy.dp_fedavg import DPFedAvg

T = TypeVar("T")

# [secagg] is read straight into `SecureAggregationConfig` (`[secagg.dp]` into its
# `DistributedDPConfig`, `roster` a path to a `Roster`): a field with this metadata is a table
# that `enabled = true` turns on; off, the field is None.
SWITCH = "enabled"
SWITCHED = {"switch": SWITCH}
# Domain fields whose TOML key is shorter: (dataclass, TOML key) -> field name.
TOML_NAMES: dict[tuple[type, str], str] = {(SecureAggregationConfig, "dp"): "distributed_dp"}


def default_of(cls: type, name: str) -> Any:
    """The default of field `name` of dataclass `cls`: a TOML section that mirrors a domain
    dataclass takes its defaults from it, so there is one set of defaults."""
    return {f.name: f for f in dataclasses.fields(cls)}[name].default


class ConfigError(FedcoreError, ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


class StrategyName(enum.Enum):
    FEDAVG = "fedavg"
    FEDPROX = "fedprox"


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundsConfig:
    """[rounds]: how many rounds and who takes part."""

    num_rounds: int = 10
    clients_per_round: int = 0
    fraction: float = 1.0
    over_selection: float = 0.0
    min_results: int = 1
    min_available: int = 1
    round_timeout_s: float = ROUND_TIMEOUT_S
    eval_fraction: float = 1.0
    eval_every: int = default_of(EngineConfig, "eval_every")
    eval_timeout_s: float = EVAL_TIMEOUT_S
    client_timeout_s: float = CLIENT_TIMEOUT_S
    seed: int = default_of(EngineConfig, "seed")


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyConfig:
    """[strategy]: the algorithm and the clients' local training settings."""

    name: StrategyName = StrategyName.FEDAVG
    local_epochs: int = default_of(FedAvg, "local_epochs")
    batch_size: int = default_of(FedAvg, "batch_size")
    learning_rate: float = default_of(FedAvg, "learning_rate")
    proximal_mu: float = default_of(FedAvg, "proximal_mu")
    server_lr: float = default_of(FedAvg, "server_lr")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerConfig:
    """[server]: where to listen and where to write."""

    address: str = "0.0.0.0:8080"
    out_dir: str = "runs/server"
    initial_model: str = ""
    long_poll_s: float = 5.0
    max_payload_mb: float = 4096.0
    auth_token_file: str = ""
    metrics_port: int = 0
    metrics_address: str = "0.0.0.0"
    run_store: str = "runs.sqlite"
    checkpoint: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError(
                f"server.metrics_port must be in 0..65535 (0: off), got {self.metrics_port}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class TLSConfig:
    """[tls]: PEM files; `cert` and `key` turn TLS on, `client_ca` also requires client certs."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise ConfigError("tls.cert and tls.key go together: set both or neither")
        if self.client_ca and not self.cert:
            raise ConfigError("tls.client_ca (mutual TLS) needs tls.cert and tls.key")


@dataclass(frozen=True, slots=True, kw_only=True)
class PrivacyConfig:
    """[privacy]: local DP-SGD on every client (Opacus), configured by the coordinator.

    Set `noise_multiplier`, or `target_epsilon` (also each client's budget) from which clients
    derive the noise for `rounds.num_rounds` rounds.
    """

    local_dp: bool = False
    noise_multiplier: float = default_of(LocalDPConfig, "noise_multiplier")
    target_epsilon: float = default_of(LocalDPConfig, "target_epsilon")
    max_grad_norm: float = default_of(LocalDPConfig, "max_grad_norm")
    delta: float = default_of(LocalDPConfig, "delta")

    def local_dp_config(self, planned_rounds: int) -> LocalDPConfig | None:
        """The clients' DP-SGD settings, or None when local DP is off."""
        if not self.local_dp:
            return None
        try:
            return LocalDPConfig(
                noise_multiplier=self.noise_multiplier,
                max_grad_norm=self.max_grad_norm,
                target_epsilon=self.target_epsilon,
                delta=self.delta,
                planned_rounds=planned_rounds if self.target_epsilon > 0 else 0,
            )
        except ValueError as err:
            raise ConfigError(f"[privacy]: {err}") from err


@dataclass(frozen=True, slots=True, kw_only=True)
class UserDPSection:
    """[user_dp]: user-level DP-FedAvg, clipped and noised by the coordinator (`DPFedAvg`).

    Set `noise_multiplier`, or `target_epsilon` spent over `rounds.num_rounds`. Needs
    `rounds.clients_per_round` (the fixed denominator) and `population` (the declared N: it
    plans z for a target; each round is accounted at selected / min(available, N), over-selection
    included, as the engine observes it). `count_noise_std` 0 means clients_per_round / 20.
    """

    enabled: bool = False
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
            raise ConfigError("[user_dp]: set exactly one of noise_multiplier and target_epsilon")
        if rounds.clients_per_round < 1:
            raise ConfigError("[user_dp] needs rounds.clients_per_round (the fixed denominator)")
        if s.name is not StrategyName.FEDAVG:
            raise ConfigError(f"[user_dp] runs FedAvg; strategy.name is {s.name.value}")
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
            raise ConfigError(f"[user_dp]: {err}") from err


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinatorConfig:
    """The whole coordinator configuration file."""

    server: ServerConfig = field(default_factory=ServerConfig)
    tls: TLSConfig = field(default_factory=TLSConfig)
    rounds: RoundsConfig = field(default_factory=RoundsConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    secagg: SecureAggregationConfig | None = field(default=None, metadata=SWITCHED)
    user_dp: UserDPSection = field(default_factory=UserDPSection)


class RunSections(Protocol):
    """The sections that describe a run, shared by the coordinator's and the simulator's files."""

    @property
    def rounds(self) -> RoundsConfig: ...
    @property
    def strategy(self) -> StrategyConfig: ...
    @property
    def privacy(self) -> PrivacyConfig: ...
    @property
    def secagg(self) -> SecureAggregationConfig | None: ...
    @property
    def user_dp(self) -> UserDPSection: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerPlan:
    """A coordinator file as read (`config`) and the run it describes (`run`), built once."""

    config: CoordinatorConfig
    run: RunPlan


def plan_run(sections: RunSections, *, max_payload_bytes: int = 4 << 30) -> RunPlan:
    """The engine settings and strategy that `sections` describe (reads the roster, if any).

    Raises:
        ConfigError: a value is invalid or settings conflict; the message names the key.
    """
    return RunPlan(engine=_engine_config(sections, max_payload_bytes),
                   strategy=_strategy(sections))


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> ServerPlan:
    """Read `path` (TOML; None for defaults) once, apply dotted-key `overrides`, and build the
    run it describes, so every bad value fails here, at start."""
    config = build(CoordinatorConfig, load_toml(path, overrides), "")
    max_payload = int(config.server.max_payload_mb * (1 << 20))
    return ServerPlan(config=config, run=plan_run(config, max_payload_bytes=max_payload))


def _engine_config(sections: RunSections, max_payload_bytes: int) -> EngineConfig:
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
            max_payload_bytes=max_payload_bytes, secagg=sections.secagg,
        )
    except ValueError as err:
        raise ConfigError(f"[rounds]: {err}") from err


def _strategy(sections: RunSections) -> Strategy:
    s = sections.strategy
    if sections.user_dp.enabled:
        if sections.secagg is not None:
            raise ConfigError("[user_dp] noises what the coordinator sees, which secure "
                              "aggregation hides; use distributed DP ([secagg.dp]) instead")
        if sections.privacy.local_dp:
            raise ConfigError("[user_dp] and [privacy] local_dp together are not supported")
        return sections.user_dp.strategy(sections.rounds, s)
    if s.name is StrategyName.FEDPROX and not s.proximal_mu > 0:
        raise ConfigError("strategy.proximal_mu must be > 0 for fedprox")
    try:
        return FedAvg(
            local_epochs=s.local_epochs,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            proximal_mu=s.proximal_mu if s.name is StrategyName.FEDPROX else 0.0,
            server_lr=s.server_lr,
            local_dp=sections.privacy.local_dp_config(sections.rounds.num_rounds),
        )
    except ValueError as err:
        raise ConfigError(f"[strategy]: {err}") from err


# Keys of earlier releases and where they live now: a file that uses one fails with the new name.
MOVED = {
    "secagg.dp_noise_multiplier": "secagg.dp.noise_multiplier",
    "secagg.dp_clip_norm": "secagg.dp.clip_norm",
    "secagg.dp_noise": "secagg.dp.kind",
    "secagg.dp_delta": "secagg.dp.delta",
}


def load_toml(path: Path | None, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tables of a TOML file (empty for None) with dotted-key `overrides` applied."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read config {path}: {err}") from err
    for dotted, value in (overrides or {}).items():
        *tables, key = dotted.split(".")
        table = data
        for name in tables:
            table = table.setdefault(name, {})
        table[key] = value
    return data


def build(cls: type[T], data: Any, prefix: str) -> T:
    """Construct dataclass `cls` from a TOML table, checking keys and types.

    Raises:
        ConfigError: a key is unknown, moved or missing, or a value is invalid; the message
            names the key (`section.key`).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a table")
    fields = toml_fields(cls)
    _check_keys(set(data), fields, prefix)
    hints = typing.get_type_hints(cls)
    kwargs = {
        fields[k].name: _field_value(hints[fields[k].name], fields[k], v, _join(prefix, k))
        for k, v in data.items()
    }
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"[{prefix}]: {err}") from err


def toml_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The fields of dataclass `cls` by their TOML key."""
    names = {field: key for (owner, key), field in TOML_NAMES.items() if owner is cls}
    return {names.get(f.name, f.name): f for f in dataclasses.fields(cls)}


def _field_value(tp: Any, f: dataclasses.Field[Any], value: Any, key: str) -> Any:
    if f.metadata.get("switch") != SWITCH or not isinstance(value, dict):
        return _convert(tp, value, key)
    on = value.get(SWITCH, False)
    if not isinstance(on, bool):
        raise ConfigError(f"{key}.{SWITCH} must be bool, got {on!r}")
    rest = {k: v for k, v in value.items() if k != SWITCH}
    if on:
        return _convert(tp, rest, key)
    _check_keys(set(rest), toml_fields(_table_type(tp)), key)
    tables = sorted(k for k, v in rest.items() if isinstance(v, dict))
    if tables:
        raise ConfigError(f"[{key}.{tables[0]}] belongs to [{key}], which is off: set "
                          f"{key}.{SWITCH} = true, or remove [{key}.{tables[0]}]")
    return None


def _table_type(tp: Any) -> type:
    if isinstance(tp, types.UnionType):
        (tp,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
    if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        raise TypeError(f"{tp} is not a table")
    return tp


def _check_keys(keys: set[str], fields: dict[str, dataclasses.Field[Any]], prefix: str) -> None:
    moved = sorted(k for k in keys if _join(prefix, k) in MOVED)
    if moved:
        raise ConfigError("; ".join(
            f"{_join(prefix, k)} is now {MOVED[_join(prefix, k)]}" for k in moved
        ) + ": rename the key(s) (see docs/deployment.md)")
    unknown = sorted(keys - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(_join(prefix, k) for k in unknown)}")
    missing = sorted(
        name for name, f in fields.items() if name not in keys
        and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise ConfigError(f"[{prefix}] needs {', '.join(_join(prefix, k) for k in missing)}")


def _convert(tp: Any, value: Any, key: str) -> Any:
    if isinstance(tp, types.UnionType):  # `X | None`: a value given is an X
        (tp,) = (arg for arg in typing.get_args(tp) if arg is not type(None))
    if tp is Roster:
        return _roster(value, key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, key)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            choices = ", ".join(str(m.value) for m in tp)
            raise ConfigError(f"{key} must be one of {choices}, got {value!r}") from None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    plain_type = isinstance(tp, type) and not isinstance(tp, types.GenericAlias)
    if plain_type and (not isinstance(value, tp) or (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{key} must be {tp.__name__}, got {value!r}")
    return value


def _roster(value: Any, key: str) -> Roster | None:
    """The roster at path `value` ("" for none), read once, at start."""
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be str (a roster file), got {value!r}")
    if not value:
        return None
    section, _, name = key.rpartition(".")
    try:
        return Roster.load(value)
    except RosterError as err:
        raise ConfigError(f"[{section}] {name}: {err}") from err


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
