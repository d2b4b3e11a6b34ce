"""Simulation throughput: vectorised vs sequential local training, FedAvg over Synthetic(1, 1).

`python -m benchmarks.simulation --clients N` runs 3 rounds with every client selected
(50 examples each, 60 features, 10 classes), multinomial logistic regression, 1 local epoch,
batch 10, SGD lr 0.01, and prints one JSON line.

- The clients' data is generated once, before timing (`data_setup_s`), and served by
  partition index, as a partitioned dataset would be.
- A round's time covers gathering the selected clients' data, deriving their seeds,
  training, and folding every update into a WeightedMean. Both backends are warmed up on
  two clients first; torch uses `--threads` intra-op threads (1 by default: tiny ops on a
  shared 2-core machine run faster without thread hand-offs, for both backends).
- The sequential backend trains the same clients from the same global model in the same
  rounds; above `--sequential-clients` it trains only that many and its time is scaled
  linearly (`sequential_scaled_from`). `max_update_diff` compares the two backends'
  updates for the clients both trained. `speedup` is the ratio of mean round times;
  `speedup_best_rounds` that of the fastest rounds, less sensitive to a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import numpy as np
import torch
from torch import nn

from fedcore.aggregate import WeightedMean
from fedcore.data.synthetic import NUM_CLASSES, NUM_FEATURES, synthetic_client
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Array, Params, add
from fedcore.sim.backends.sequential import LocalData, LocalResult, TrainJob, train_sequential
from fedcore.sim.backends.vmap import train_vectorised
from fedcore.sim.population import Population

ROUNDS = 3
Backend = Callable[[TrainJob], Iterator[LocalResult]]
SAMPLES = 50


SETTINGS = TrainConfig(local_epochs=1, batch_size=10, learning_rate=0.01)


def fold(
    results: Iterator[LocalResult], keep: int
) -> tuple[dict[str, Array], dict[int, dict[str, Array]]]:
    """FedAvg's example-weighted mean update, and copies of the updates of clients `< keep`."""
    mean, kept = WeightedMean(), {}
    for result in results:
        if result.client < keep:
            kept[result.client] = {n: v.copy() for n, v in result.update.items()}
        mean.add(result.update, float(result.num_examples))
    return mean.result().update, kept


def run_round(
    backend: Backend,
    model: nn.Module,
    params: Params,
    population: Population,
    indices: Sequence[int],
    round_number: int,
    keep: int,
) -> tuple[float, dict[str, Array], dict[int, dict[str, Array]]]:
    """One round over `indices`: load data, train, fold. Returns (seconds, mean update, results)."""
    begin = time.perf_counter()
    data: list[LocalData] = [population.load(i) for i in indices]
    seeds = population.train_seeds(indices, round_number).tolist()
    job = TrainJob(model=model, global_params=params, clients=data, seeds=seeds,
                   settings=SETTINGS)
    update, kept = fold(backend(job), keep)
    return time.perf_counter() - begin, update, kept


def main(argv: Sequence[str] | None = None) -> None:
    """Parse arguments, run the rounds, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--sequential-clients", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    torch.manual_seed(args.seed)
    model = nn.Linear(NUM_FEATURES, NUM_CLASSES)
    params: Params = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    begin = time.perf_counter()
    dataset = [
        synthetic_client(1.0, 1.0, k, seed=args.seed, samples_per_client=SAMPLES)
        for k in range(args.clients)
    ]
    setup_s = time.perf_counter() - begin
    population = Population(args.clients, seed=args.seed, data=dataset.__getitem__)
    everyone = list(range(args.clients))
    subset = everyone[: min(args.clients, args.sequential_clients)]
    vectorised: Backend = partial(train_vectorised, device=args.device)
    sequential: Backend = train_sequential
    for backend in (vectorised, sequential):  # warm-up: first-call costs are not a round's
        run_round(backend, model, params, population, [0, 1], 0, 0)
    vec_s, seq_s, diff = [], [], 0.0
    for rnd in range(1, ROUNDS + 1):
        t_vec, update, vec = run_round(vectorised, model, params, population, everyone, rnd,
                                       len(subset))
        t_seq, _, seq = run_round(sequential, model, params, population, subset, rnd, len(subset))
        diff = max(diff, _max_diff(vec, seq))
        vec_s.append(t_vec)
        seq_s.append(t_seq * args.clients / len(subset))
        params = add(params, update)
    report = _report(args, vec_s, seq_s, diff, len(subset))
    print(json.dumps(report | {"data_setup_s": round(setup_s, 3)}))


def _max_diff(vec: dict[int, dict[str, Array]], seq: dict[int, dict[str, Array]]) -> float:
    return max(float(np.abs(np.subtract(vec[k][n], u[n])).max()) for k, u in seq.items() for n in u)


def _report(
    args: argparse.Namespace, vec_s: list[float], seq_s: list[float], diff: float, sampled: int
) -> dict[str, object]:
    vec, seq = float(np.mean(vec_s)), float(np.mean(seq_s))
    report: dict[str, object] = {
        "benchmark": "simulation",
        "clients": args.clients,
        "rounds": ROUNDS,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "vectorised_round_s": round(vec, 4),
        "sequential_round_s": round(seq, 4),
        "speedup": round(seq / vec, 1),
        "speedup_best_rounds": round(min(seq_s) / min(vec_s), 1),
        "vectorised_round_s_each": [round(t, 4) for t in vec_s],
        "sequential_round_s_each": [round(t, 4) for t in seq_s],
        "max_update_diff": diff,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if sampled < args.clients:
        report["sequential_scaled_from"] = sampled
    return report


if __name__ == "__main__":
    main()
