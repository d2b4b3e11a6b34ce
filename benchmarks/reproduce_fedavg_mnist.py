"""FedAvg on pathological non-IID MNIST (McMahan et al. 2017, Table 2, CNN, E = 5, B = 10).

100 clients, each 2 label-sorted shards of 300 training images; C = 0.1 (10 clients per
round), E = 5 local epochs, B = 10, SGD; the CNN of the paper (`fedcore.training.models.mnist_cnn`).
Accuracy is the global model's on the 10k MNIST test set after each evaluated round
(server-side `CentralEvaluator`); training goes through the real round engine
(`InProcessDriver`). `--algorithm fedsgd` runs the paper's FedSGD baseline (E = 1, B = all
of a client's data). The paper reports the rounds to reach 99% test accuracy.

Writes one JSON line per evaluated round to `--log` as it goes (so a long run in the
background can be followed), then `benchmarks/results/fedavg_mnist.png` and a summary JSON
line on stdout.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from fedcore.client.torch_app import state_to_params
from fedcore.data.mnist import load_mnist
from fedcore.data.partition import shard_partition
from fedcore.engine import EngineConfig, RoundEngine, RoundRecord, SelectionConfig
from fedcore.sim.backends.pool import ProcessPool
from fedcore.sim.central import CentralEvaluator
from fedcore.sim.driver import InProcessDriver
from fedcore.sim.population import Population, partitioned_data
from fedcore.sim.registry import VirtualRegistry
from fedcore.sim.runners import TorchRunner
from fedcore.strategy import FedAvg
from fedcore.training.models import mnist_cnn, seeded

RESULTS = Path(__file__).resolve().parent / "results"
CLIENTS, PER_ROUND, TARGET = 100, 10, 0.99
PAPER_ROUNDS = {"fedavg": 229, "fedsgd": 483}  # Table 2, CNN, pathological non-IID
_LOCAL = {"fedavg": "E=5, B=10", "fedsgd": "E=1, B=all"}


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Run, log each evaluated round, plot, print a summary JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--algorithm", choices=["fedavg", "fedsgd"], default="fedavg")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--vectorised", action="store_true",
                        help="vectorised backend (slower than sequential for this CNN on CPU)")
    parser.add_argument("--workers", type=int, default=0,
                        help="train in this many worker processes (sequential kernel)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--from-log", action="store_true",
                        help="only summarise and plot an existing --log (e.g. a stopped run)")
    parser.add_argument("--stop-at-target", action="store_true",
                        help="stop at the first evaluated round that reaches 99%% test accuracy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log", type=Path, default=RESULTS / "fedavg_mnist_rounds.jsonl")
    parser.add_argument("--plot", type=Path, default=RESULTS / "fedavg_mnist.png")
    parser.add_argument("--compare", type=Path, action="append", default=[], metavar="LOG",
                        help="also draw another run's per-round log (e.g. FedSGD's), "
                             "labelled by its file name")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.from_log:
        logged = _read_log(args.log)
        return _finish(args, logged, logged[-1]["wall_s"], rounds_run=int(logged[-1]["round"]))

    mnist = load_mnist(flat=True)
    parts = shard_partition(mnist.y_train, CLIENTS, shards_per_client=2, seed=args.seed)
    population = Population(CLIENTS, seed=args.seed,
                            data=partitioned_data(mnist.x_train, mnist.y_train, parts))
    model = seeded(mnist_cnn(), args.seed)
    fedsgd = args.algorithm == "fedsgd"
    strategy = FedAvg(local_epochs=1 if fedsgd else 5, batch_size=600 if fedsgd else 10,
                      learning_rate=args.lr)
    engine = RoundEngine(
        EngineConfig(num_rounds=args.rounds, train=SelectionConfig(count=PER_ROUND),
                     evaluate=None, round_timeout_s=1e6, seed=args.seed),
        strategy, initial_params=state_to_params(model), registry=VirtualRegistry(population),
    )
    evaluate = CentralEvaluator(model, (mnist.x_test, mnist.y_test))
    curve: list[dict[str, float]] = []
    rounds_run = args.rounds
    begin = time.perf_counter()
    args.log.parent.mkdir(parents=True, exist_ok=True)
    with args.log.open("w") as log:

        def on_round(record: RoundRecord) -> None:
            if record.round % args.eval_every and record.round != args.rounds:
                return
            assert engine.params is not None
            metrics = evaluate(engine.params)
            row = {"round": record.round, "test_accuracy": metrics.accuracy,
                   "test_loss": metrics.loss, "train_loss": record.train_loss or 0.0,
                   "wall_s": round(time.perf_counter() - begin, 1)}
            curve.append(row)
            log.write(json.dumps(row) + "\n")
            log.flush()
            if args.stop_at_target and metrics.accuracy >= TARGET:
                raise _TargetReached(record.round)

        pool = ProcessPool(args.workers, vectorised=False, threads=args.threads) if args.workers else None
        runner = TorchRunner(model, population, vectorised=args.vectorised, test_fraction=0.0,
                             pool=pool)
        try:
            InProcessDriver(engine, population, runner, on_round=on_round).run()
        except _TargetReached as reached:
            rounds_run = reached.round
        finally:
            if pool is not None:
                pool.close()
    return _finish(args, curve, time.perf_counter() - begin, rounds_run=rounds_run)


class _TargetReached(Exception):
    """Raised from the round callback to end a `--stop-at-target` run."""

    def __init__(self, round_: int) -> None:
        super().__init__(f"99% test accuracy at round {round_}")
        self.round = round_


def _read_log(path: Path) -> list[dict[str, float]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _finish(
    args: argparse.Namespace, curve: list[dict[str, float]], wall: float, rounds_run: int
) -> dict[str, object]:
    report = _report(args, curve, wall, rounds_run)
    _plot(curve, args.plot, args)
    print(json.dumps(report))
    return report


def _report(
    args: argparse.Namespace, curve: list[dict[str, float]], wall: float, rounds_run: int
) -> dict[str, object]:
    reached = next((r["round"] for r in curve if r["test_accuracy"] >= TARGET), None)
    report: dict[str, object] = {
        "benchmark": "reproduce_fedavg_mnist",
        "algorithm": args.algorithm,
        "rounds": rounds_run,
        "lr": args.lr,
        "final_test_accuracy": round(curve[-1]["test_accuracy"], 4),
        "best_test_accuracy": round(max(r["test_accuracy"] for r in curve), 4),
        "rounds_to_99": reached,
        "paper_rounds_to_99": PAPER_ROUNDS[args.algorithm],
        "seconds_per_round": round(wall / rounds_run, 2),
    }
    if args.from_log:  # how the logged run trained is not in its log
        return {**report, "from_log": str(args.log)}
    return {**report, "backend": "vectorised" if args.vectorised else "sequential",
            "workers": args.workers, "torch_threads": torch.get_num_threads()}


def _plot(curve: list[dict[str, float]], path: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot([r["round"] for r in curve], [r["test_accuracy"] for r in curve],
            label=f"fedcore {args.algorithm} ({_LOCAL[args.algorithm]}), lr {args.lr}")
    others = {log.stem: _read_log(log) for log in args.compare}
    for label, other in others.items():
        ax.plot([r["round"] for r in other], [r["test_accuracy"] for r in other], label=label)
    ax.axhline(TARGET, color="grey", linestyle="--", linewidth=0.8)
    ax.axvline(PAPER_ROUNDS[args.algorithm], color="tab:red", linestyle=":",
               label=f"paper: 99% at round {PAPER_ROUNDS[args.algorithm]}")
    rows = [r for run in (curve, *others.values()) for r in run]
    low = float(np.clip(min(r["test_accuracy"] for r in rows), 0.0, 0.9))
    last = max(int(r["round"]) for r in rows)
    ax.set(xlabel="round", ylabel="test accuracy (10k MNIST)", ylim=(low, 1.0),
           xlim=(0, max(last, PAPER_ROUNDS[args.algorithm]) + 5),
           title="MNIST CNN, 100 clients x 2 label-sorted shards, C=0.1")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
