"""Simulation settings, read from TOML like the coordinator's (unknown keys fail by name)."""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedcore.compression.codec import Compression, Kind
from fedcore.config import SWITCHED, ConfigError, RunSections, build, load_toml
from fedcore.secagg.config import choose_bit_width


class Dataset(enum.Enum):
    SYNTHETIC = "synthetic"
    DIGITS = "digits"
    MNIST = "mnist"


class Partition(enum.Enum):
    IID = "iid"
    DIRICHLET = "dirichlet"
    SHARDS = "shards"


class ModelKind(enum.Enum):
    LOGREG = "logreg"
    MLP = "mlp"
    CNN = "cnn"


class BackendKind(enum.Enum):
    VECTORISED = "vectorised"
    SEQUENTIAL = "sequential"
    PROCESSES = "processes"  # vectorised, in `workers` processes
    RAY = "ray"  # vectorised, as `workers` Ray tasks per round (pip install fedcore[ray])


@dataclass(frozen=True, slots=True, kw_only=True)
class DataConfig:
    """[data]: what the virtual clients hold."""

    dataset: Dataset = Dataset.SYNTHETIC
    synthetic_alpha: float = 1.0
    synthetic_beta: float = 1.0
    samples_per_client: int = 0
    partition: Partition = Partition.DIRICHLET
    dirichlet_alpha: float = 0.5
    shards_per_client: int = 2
    test_fraction: float = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class TimingConfig:
    """[timing]: simulated device speed and reliability (see `TimingModel`)."""

    s_per_example: float = 1e-3
    speed_sigma: float = 0.5
    latency_s: float = 0.5
    dropout: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class StragglerConfig:
    """[stragglers]: per round, this share of the selected clients finishes only 1..E-1 local
    epochs by the deadline; partial work counts or misses the deadline (see `StragglerModel`)."""

    fraction: float = 0.0
    accept_partial_work: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    """[simulation]: population, backend and output."""

    clients: int = 100
    model: ModelKind = ModelKind.LOGREG
    backend: BackendKind = BackendKind.VECTORISED
    workers: int = 2
    device: str = "cpu"
    seed: int = 0
    out_dir: str = "runs/sim"
    tensorboard: bool = False
    """Also write TensorBoard event files to `out_dir`/tensorboard (the [tensorboard] extra)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationConfig(RunSections):
    """A whole simulation file: [simulation], [data], [timing], [stragglers], [compression]
    (the clients' upload compression, `enabled = true` with `kind = "quantize"` and `bits`, or
    `kind = "topk"` and `fraction`; under [secagg], quantisation sets the masked bit width), and
    the run's sections a coordinator's file has too ([rounds], [strategy], [privacy], [secagg])."""

    simulation: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    timing: TimingConfig = field(default_factory=TimingConfig)
    stragglers: StragglerConfig = field(default_factory=StragglerConfig)
    compression: Compression | None = field(default=None, metadata=SWITCHED)


def load_simulation_config(
    path: Path | None, overrides: dict[str, Any] | None = None
) -> SimulationConfig:
    """Read and validate a simulation TOML file, with dotted-key overrides."""
    data = load_toml(path, overrides)
    secagg = data.get("secagg")
    if isinstance(secagg, dict) and secagg.get("roster"):  # refused before the file is read
        raise ConfigError("[secagg] roster: signed rounds need enrolled clients with their own "
                          "keys; simulated clients run unsigned rounds (remove the roster)")
    config = build(SimulationConfig, data, "")
    if config.simulation.clients < 1:
        raise ConfigError("simulation.clients must be >= 1")
    if config.buffered is not None and config.compression is not None:
        raise ConfigError("[compression] applies to plain rounds; a buffered run ([buffered]) "
                          "takes dense updates: turn one of them off")
    if config.buffered is not None and config.stragglers.fraction > 0:
        raise ConfigError("stragglers.fraction: partial work by a round's deadline is a round "
                          "notion; a buffered run ([buffered]) gets its slow devices from "
                          "[timing] (speed_sigma): remove [stragglers]")
    if config.compression is not None and config.secagg is not None:
        return _compressed_secure(config, explicit_width=isinstance(secagg, dict)
                                  and "bit_width" in secagg)
    return config


def _compressed_secure(config: SimulationConfig, *, explicit_width: bool) -> SimulationConfig:
    """[compression] under [secagg]: quantisation to p bits sets the masked integers' width,
    b = p + ceil(log2 max_clients) (`choose_bit_width`), so each client keeps p bits of
    precision and sums still cannot wrap; the clients then send the dense masked update at b
    bits. Top-k cannot be masked (a sparse vector's support is what it reveals)."""
    compression, secure = config.compression, config.secagg
    assert compression is not None and secure is not None
    if compression.kind is not Kind.QUANTIZE:
        raise ConfigError("[compression] kind = 'topk' cannot run under [secagg]: a masked "
                          "vector is dense; use kind = 'quantize' (it sets the masked bit "
                          "width) or turn one of them off")
    width = choose_bit_width(secure.max_clients, compression.bits)
    if explicit_width and secure.bit_width != width:
        raise ConfigError(f"[compression] bits = {compression.bits} under [secagg] sets "
                          f"secagg.bit_width = {width} (with max_clients = "
                          f"{secure.max_clients}); the file also sets bit_width = "
                          f"{secure.bit_width}: remove one of the two")
    try:
        secure = dataclasses.replace(secure, bit_width=width)
    except ValueError as err:
        raise ConfigError(f"[compression] under [secagg]: {err}") from err
    return dataclasses.replace(config, secagg=secure, compression=None)
