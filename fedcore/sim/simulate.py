"""Simulate a federation in one process: `fedcore.sim.simulate.run(config)` or `fedcore simulate`.

The run goes through the same round engine, strategies and client semantics as a deployment
(see `fedcore.sim.driver`) and writes the same history files (JSON, CSV, PNG).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from torch import nn

from fedcore.client.torch_app import state_to_params
from fedcore.config import plan_run
from fedcore.data.digits import load_digits_split
from fedcore.data.mnist import load_mnist
from fedcore.data.partition import dirichlet_partition, iid_partition, shard_partition
from fedcore.data.split import DatasetSplit
from fedcore.data.synthetic import NUM_CLASSES, NUM_FEATURES, synthetic_client
from fedcore.engine import RoundRecord
from fedcore.engine.plan import build_run
from fedcore.report.history import HistoryWriter
from fedcore.report.plot import plot_history
from fedcore.report.tensorboard import TensorBoardWriter
from fedcore.sim.compression import compressing_handlers
from fedcore.sim.config import (
    BackendKind,
    Dataset,
    ModelKind,
    Partition,
    SimulationConfig,
)
from fedcore.sim.driver import InProcessDriver, SimulationResult
from fedcore.sim.pools import training_pool
from fedcore.sim.population import DataSource, Population, partitioned_data
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner
from fedcore.sim.scaffold import StoredVariates
from fedcore.sim.stragglers import StragglerModel
from fedcore.sim.timing import TimingModel
from fedcore.strategy.base import Strategy
from fedcore.training.models import logistic_regression, mlp, mnist_cnn, seeded

__all__ = ["SimulationConfig", "SimulationResult", "run"]


def run(
    config: SimulationConfig,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
    write: bool = True,
    strategy: Strategy | None = None,
) -> SimulationResult:
    """Simulate `config` to the end; with `write`, history and plot go to `out_dir`.

    `strategy`, your own `fedcore.strategy.Strategy`, replaces the one `[strategy]` describes
    (docs/guides/researcher.md shows one).
    """
    sim = config.simulation
    plan = plan_run(config)  # bad settings fail here, before any data is loaded
    if strategy is not None:
        plan = dataclasses.replace(plan, strategy=strategy)
    data, num_features, num_classes = _data_source(config)
    population = Population(sim.clients, seed=sim.seed, data=data)
    model = seeded(_model(sim.model, num_features, num_classes), sim.seed)
    engine = build_run(plan, initial_params=state_to_params(model),
                       registry=VirtualRegistry(population))
    pool = training_pool(sim.backend, sim.workers)
    runner = TorchRunner(
        model, population, vectorised=sim.backend is not BackendKind.SEQUENTIAL,
        device=sim.device, test_fraction=config.data.test_fraction, pool=pool,
    )
    t = config.timing
    timing = TimingModel(
        s_per_example=t.s_per_example, speed_sigma=t.speed_sigma, latency_s=t.latency_s,
        dropout=t.dropout, seed=sim.seed,
    )
    history = HistoryWriter(Path(sim.out_dir)) if write else None
    board = (TensorBoardWriter(Path(sim.out_dir) / "tensorboard")
             if write and sim.tensorboard else None)

    def record(r: RoundRecord) -> None:
        if history is not None:
            history.append(r)
        if board is not None:
            board.append(r)
        if on_round is not None:
            on_round(r)

    stragglers = StragglerModel(
        fraction=config.stragglers.fraction,
        accept_partial_work=config.stragglers.accept_partial_work, seed=sim.seed,
    )
    handler = {} if config.compression is None else {
        "handler": compressing_handlers(config.compression, seed=sim.seed, variates=lambda cid: (
            StoredVariates(population.control_variates, population.index_of(cid))))}
    driver = InProcessDriver(
        engine, population, runner, timing=timing, stragglers=stragglers, on_round=record,
        **handler,
    )
    try:
        result = driver.run()
    finally:
        if pool is not None:
            pool.close()
        if board is not None:
            board.close()
    if history is not None and history.rows:
        plot_history(history.rows, history.out_dir / "training.png", title="fedcore simulation")
    return result


def _model(kind: ModelKind, num_features: int, num_classes: int) -> nn.Module:
    match kind:
        case ModelKind.LOGREG:
            return logistic_regression(num_features, num_classes)
        case ModelKind.MLP:
            return mlp(num_features, num_classes)
        case ModelKind.CNN:
            if num_features != 28 * 28:
                raise ValueError("the CNN model needs 28x28 images (dataset = 'mnist')")
            return mnist_cnn(num_classes)


def _data_source(config: SimulationConfig) -> tuple[DataSource, int, int]:
    d, sim = config.data, config.simulation
    if d.dataset is Dataset.SYNTHETIC:
        source = partial(
            synthetic_client, d.synthetic_alpha, d.synthetic_beta, seed=sim.seed,
            samples_per_client=d.samples_per_client or None,
        )
        return source, NUM_FEATURES, NUM_CLASSES
    split: DatasetSplit = (
        load_digits_split(seed=sim.seed) if d.dataset is Dataset.DIGITS else load_mnist(flat=True)
    )
    x = np.concatenate([split.x_train, split.x_test])
    y = np.concatenate([split.y_train, split.y_test])
    match d.partition:
        case Partition.IID:
            parts = iid_partition(len(y), sim.clients, seed=sim.seed)
        case Partition.DIRICHLET:
            parts = dirichlet_partition(
                y, sim.clients, alpha=d.dirichlet_alpha, seed=sim.seed, min_size=2
            )
        case Partition.SHARDS:
            parts = shard_partition(
                y, sim.clients, shards_per_client=d.shards_per_client, seed=sim.seed
            )
    return partitioned_data(x, y, parts), x.shape[1], split.num_classes
