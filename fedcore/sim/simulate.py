"""Simulate a federation in one process: `fedcore.sim.simulate.run(config)` or `fedcore simulate`.

The run goes through the same round engine, strategies and client semantics as a deployment
(see `fedcore.sim.driver`) and writes the same history files (JSON, CSV, PNG). With [buffered]
it is FedBuff instead, through the deployed buffered engine (`fedcore.sim.buffered`): each
server step is one row of the history, and there is no federated evaluation.
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
from fedcore.engine.buffered import BufferRecord
from fedcore.engine.buffered_coordinator import as_round_record
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.plan import RunPlan, build_buffered, build_run
from fedcore.protocol.params import Params
from fedcore.report.history import HistoryWriter
from fedcore.report.plot import plot_history
from fedcore.report.tensorboard import TensorBoardWriter
from fedcore.sim.buffered import BufferedDriver
from fedcore.sim.buffered_secure import SecureBufferedDriver
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
from fedcore.sim.runners import TaskRunner, TorchRunner
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
    try:
        if plan.buffered is not None:
            result = _run_buffered(plan, config, population, runner, timing, record,
                                   state_to_params(model))
        else:
            engine = build_run(plan, initial_params=state_to_params(model),
                               registry=VirtualRegistry(population))
            result = InProcessDriver(
                engine, population, runner, timing=timing, stragglers=stragglers,
                on_round=record, **handler,
            ).run()
    finally:
        if pool is not None:
            pool.close()
        if board is not None:
            board.close()
    if history is not None and history.rows:
        plot_history(history.rows, history.out_dir / "training.png", title="fedcore simulation")
    return result


def _run_buffered(plan: RunPlan, config: SimulationConfig, population: Population,
                  runner: TaskRunner, timing: TimingModel,
                  record: Callable[[RoundRecord], None], initial: Params) -> SimulationResult:
    """FedBuff in simulated time (with [secagg], each buffer one secure group); each server
    step is recorded as a round once its evaluation closed."""
    records: list[RoundRecord] = []
    engine = build_buffered(plan, initial_params=initial)
    previous_at = 0.0

    def on_record(step: BufferRecord) -> None:
        nonlocal previous_at
        records.append(as_round_record(step, previous_at))
        previous_at = step.at_s
        record(records[-1])

    driver = (SecureBufferedDriver if isinstance(engine, SecureBufferedEngine) else
              BufferedDriver)(engine, population, runner, timing=timing,  # type: ignore[arg-type]
                              on_record=on_record, seed=config.simulation.seed)
    done = driver.run()
    return SimulationResult(records=records, params=done.params, simulated_s=done.simulated_s)


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
