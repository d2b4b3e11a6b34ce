"""SCAFFOLD against FedAvg, and FedBuff against synchronous rounds with slow devices, on non-IID
digits in simulation.

`python -m benchmarks.scaffold_fedbuff [--out benchmarks/results/scaffold_fedbuff.json]` prints
one JSON line:

- `drift`: FedAvg and SCAFFOLD, synchronous rounds, their `rounds_to_target` (first round whose
  central test accuracy reaches `target_accuracy`, null if never) and `final_accuracy`;
- `async`: synchronous FedAvg rounds (K clients per round; a round waits for its slowest
  client), the same with 30% over-selection (a round asks 1.3 K clients and closes at the first
  K results), and FedBuff (buffer K, `concurrency` tasks out at once, s(τ) = 1/sqrt(1 + τ)), both
  for the same number of server steps and under the same `TimingModel` (per-device speed
  lognormal with log-std `speed_sigma`: slow devices stay slow): simulated seconds to the
  target, simulated seconds in all, final accuracy, client updates used, and FedBuff's mean
  staleness;
- the same two with secure aggregation (`secure_sync_fedavg`: each round one secure group of K;
  `secure_fedbuff`: each buffer one secure group of K, `fedcore.engine.buffered_secure`), and
  what securing cost each in simulated seconds to the target.

Setting (as `benchmarks.strategies`): scikit-learn's digits, 75% of them split over 50 clients by
Dirichlet(0.3) label skew (seed 0), multinomial logistic regression, 2 local epochs of SGD
(batch 8, lr 0.1); the other 25% is the central test set. Every run goes through the deployed
engines and client task handler.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedcore.client.torch_app import state_to_params
from fedcore.data.digits import load_digits_split
from fedcore.data.partition import dirichlet_partition
from fedcore.engine import EngineConfig, RoundEngine, RoundRecord, SelectionConfig
from fedcore.engine.buffered import BufferedConfig, BufferedEngine, BufferRecord
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.params import Params
from fedcore.protocol.scaffold import split_control
from fedcore.sim.buffered import BufferedDriver
from fedcore.sim.buffered_secure import SecureBufferedDriver
from fedcore.sim.central import CentralEvaluator
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population, partitioned_data
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner
from fedcore.sim.timing import TimingModel
from fedcore.strategy import FedAvg
from fedcore.strategy.base import Strategy
from fedcore.strategy.scaffold import Scaffold, with_control_variate
from fedcore.training.models import logistic_regression, seeded

CLIENTS, K, CONCURRENCY, SEED, TARGET = 50, 10, 20, 0, 0.85
OVER_SELECTION = 0.3  # the usual mitigation of stragglers: ask 13, keep the first 10
LOCAL = {"local_epochs": 2, "batch_size": 8, "learning_rate": 0.1}
TIMING = TimingModel(s_per_example=0.01, speed_sigma=1.0, latency_s=1.0, seed=SEED)
SECURE = SecureAggregationConfig(max_clients=CONCURRENCY, clip=1.0, weight_cap=100.0,
                                 phase_timeout_s=30.0)


class Setup:
    """The data, population, model and central evaluator every run shares."""

    def __init__(self) -> None:
        split = load_digits_split(seed=SEED)
        parts = dirichlet_partition(split.y_train, CLIENTS, alpha=0.3, seed=SEED, min_size=2)
        self.data = partitioned_data(split.x_train, split.y_train, parts)
        self.model = seeded(logistic_regression(split.x_train.shape[1], split.num_classes), SEED)
        self.initial = state_to_params(self.model)
        self.evaluate = CentralEvaluator(self.model, (split.x_test, split.y_test))

    def population(self) -> Population:
        return Population(CLIENTS, seed=SEED, data=self.data)

    def accuracy(self, params: Params) -> float:
        return self.evaluate(split_control(params)[0]).accuracy


def _synchronous(setup: Setup, strategy: Strategy, initial: Params, rounds: int,
                 timing: TimingModel | None, over_selection: float = 0.0,
                 secure: SecureAggregationConfig | None = None) -> list[tuple[float, float]]:
    """(simulated seconds, central accuracy) after each round; with `over_selection` a round
    asks that share more clients and closes at the first K results; with `secure` each round
    is one secure-aggregation group."""
    population = setup.population()
    per_round = SelectionConfig(count=K, min_results=K, min_available=K,
                                over_selection=over_selection)
    config = EngineConfig(num_rounds=rounds, train=per_round, evaluate=None,
                          round_timeout_s=1e6, seed=SEED, secagg=secure)
    engine = RoundEngine(config, strategy, initial_params=initial,
                         registry=VirtualRegistry(population))
    curve: list[tuple[float, float]] = []
    driver: InProcessDriver

    def on_round(record: RoundRecord) -> None:
        assert engine.params is not None
        curve.append((driver.now, setup.accuracy(engine.params)))

    runner = TorchRunner(setup.model, population, vectorised=False, test_fraction=0.0)
    driver = InProcessDriver(engine, population, runner, timing=timing, on_round=on_round)
    driver.run()
    return curve


def _buffered(setup: Setup, config: BufferedConfig, strategy: Strategy, timing: TimingModel,
              secure: SecureAggregationConfig | None = None
              ) -> tuple[list[tuple[float, float]], float, int]:
    """FedBuff's (simulated seconds, central accuracy) after each server step, its mean
    staleness and how many tasks it handed out (with `secure`, each buffer a secure group)."""
    population = setup.population()
    curve: list[tuple[float, float]] = []

    def on_update(record: BufferRecord, params: Params) -> None:
        curve.append((record.at_s, setup.accuracy(params)))

    runner = TorchRunner(setup.model, population, vectorised=False, test_fraction=0.0)
    driver: BufferedDriver | SecureBufferedDriver
    if secure is None:
        driver = BufferedDriver(BufferedEngine(config, strategy, setup.initial), population,
                                runner, timing=timing, on_update=on_update, seed=SEED)
    else:
        driver = SecureBufferedDriver(
            SecureBufferedEngine(config, strategy, setup.initial, secure), population, runner,
            timing=timing, on_update=on_update, seed=SEED)
    result = driver.run()
    staleness = [t for r in result.records for t in r.staleness]
    return curve, float(np.mean(staleness)), result.tasks


def _to_target(curve: list[tuple[float, float]]) -> tuple[int | None, float | None]:
    for i, (at, acc) in enumerate(curve):
        if acc >= TARGET:
            return i + 1, round(at, 1)
    return None, None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON line here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    setup = Setup()

    drift = {}
    for name, strategy, initial in (
        ("fedavg", FedAvg(**LOCAL), setup.initial),  # type: ignore[arg-type]
        ("scaffold", Scaffold(num_clients=CLIENTS, **LOCAL),  # type: ignore[arg-type]
         with_control_variate(setup.initial)),
    ):
        curve = _synchronous(setup, strategy, initial, args.rounds, None)
        rounds, _ = _to_target(curve)
        drift[name] = {"rounds_to_target": rounds, "final_accuracy": round(curve[-1][1], 4)}

    sync = _synchronous(setup, FedAvg(**LOCAL), setup.initial, args.rounds, TIMING)  # type: ignore[arg-type]
    over = _synchronous(setup, FedAvg(**LOCAL), setup.initial, args.rounds, TIMING,  # type: ignore[arg-type]
                        over_selection=OVER_SELECTION)
    fedbuff = BufferedConfig(buffer_size=K, concurrency=CONCURRENCY, num_updates=args.rounds,
                             task_timeout_s=1e6)
    buffered, staleness, tasks = _buffered(setup, fedbuff, FedAvg(**LOCAL), TIMING)  # type: ignore[arg-type]
    secure_sync = _synchronous(setup, FedAvg(**LOCAL), setup.initial, args.rounds, TIMING,  # type: ignore[arg-type]
                               secure=SECURE)
    secure_buffered, secure_staleness, secure_tasks = _buffered(
        setup, fedbuff, FedAvg(**LOCAL), TIMING, secure=SECURE)  # type: ignore[arg-type]
    rows: dict[str, dict[str, Any]] = {}
    for name, curve, updates in (("sync_fedavg", sync, K * args.rounds),
                                 ("sync_fedavg_over_selection", over, K * args.rounds),
                                 ("fedbuff", buffered, K * args.rounds),
                                 ("secure_sync_fedavg", secure_sync, K * args.rounds),
                                 ("secure_fedbuff", secure_buffered, K * args.rounds)):
        steps, seconds = _to_target(curve)
        rows[name] = {"steps_to_target": steps, "simulated_s_to_target": seconds,
                      "simulated_s": round(curve[-1][0], 1),
                      "final_accuracy": round(curve[-1][1], 4), "client_updates": updates}
    rows["fedbuff"]["mean_staleness"] = round(staleness, 3)
    rows["fedbuff"]["tasks_handed_out"] = tasks
    rows["secure_fedbuff"]["mean_staleness"] = round(secure_staleness, 3)
    rows["secure_fedbuff"]["tasks_handed_out"] = secure_tasks
    d, e = (rows[n]["simulated_s_to_target"] for n in ("secure_sync_fedavg", "secure_fedbuff"))
    a, b = rows["sync_fedavg"]["simulated_s_to_target"], rows["fedbuff"]["simulated_s_to_target"]
    c = rows["sync_fedavg_over_selection"]["simulated_s_to_target"]
    line = {
        "benchmark": "scaffold_fedbuff",
        "dataset": f"digits, Dirichlet(0.3) over {CLIENTS} clients", "model": "logistic regression",
        "rounds": args.rounds, "clients_per_step": K, "fedbuff_concurrency": CONCURRENCY,
        "target_accuracy": TARGET, "local": LOCAL, "over_selection": OVER_SELECTION,
        "timing": {"s_per_example": TIMING.s_per_example, "speed_sigma": TIMING.speed_sigma,
                   "latency_s": TIMING.latency_s},
        "drift": drift, "async": rows,
        "time_to_target_speedup": round(a / b, 2) if a and b else None,
        "time_to_target_speedup_vs_over_selection": round(c / b, 2) if c and b else None,
        "secure": {"mode": SECURE.mode.value, "clip": SECURE.clip, "bit_width": SECURE.bit_width},
        "secure_time_to_target_speedup": round(d / e, 2) if d and e else None,
        "securing_cost_fedbuff": round(e / b, 2) if e and b else None,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    text = json.dumps(line)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return line


if __name__ == "__main__":
    main()
