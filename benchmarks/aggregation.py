"""The cost of order-independent averaging: `WeightedMean` (an exact sum, docs/protocol.md 5.3)
against the naive float32 running sum it replaced, on the same updates.

`python -m benchmarks.aggregation --params 1000000 --clients 20 --repeats 3` prints one JSON line:
- `exact_s`: folding `clients` float32 updates of `params` elements into a `WeightedMean` and
  taking the mean (median of `repeats` runs);
- `float32_s`: the same with `acc += w * u` in float32 (order-dependent in the last bits);
- `ratio`: exact / float32; `exact_mb_per_s`: update bytes folded per second;
- `orders_identical`: whether two arrival orders gave identical mean bytes with each method.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np

from fedcore.aggregate.mean import WeightedMean


def median_s(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def exact_mean(updates: list[np.ndarray], weights: list[float], order: list[int]) -> bytes:
    agg = WeightedMean()
    for i in order:
        agg.add({"w": updates[i]}, weights[i])
    return agg.result().update["w"].astype(np.float32).tobytes()


def float32_mean(updates: list[np.ndarray], weights: list[float], order: list[int]) -> bytes:
    acc = np.zeros_like(updates[0])
    for i in order:
        acc += updates[i] * np.float32(weights[i])
    acc /= np.float32(sum(weights))
    return acc.tobytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    updates = [(rng.standard_normal(args.params, dtype=np.float32) * np.float32(1e-3))
               for _ in range(args.clients)]
    weights = [float(rng.integers(1, 5000)) for _ in range(args.clients)]
    forward, backward = list(range(args.clients)), list(reversed(range(args.clients)))
    exact_s = median_s(lambda: exact_mean(updates, weights, forward), args.repeats)
    float32_s = median_s(lambda: float32_mean(updates, weights, forward), args.repeats)
    print(json.dumps({
        "benchmark": "aggregation", "params": args.params, "clients": args.clients,
        "exact_s": round(exact_s, 4), "float32_s": round(float32_s, 4),
        "ratio": round(exact_s / float32_s, 2),
        "exact_mb_per_s": round(4 * args.params * args.clients / exact_s / 1e6, 1),
        "orders_identical": {
            "exact": exact_mean(updates, weights, forward) == exact_mean(updates, weights, backward),
            "float32": float32_mean(updates, weights, forward)
            == float32_mean(updates, weights, backward),
        },
    }))


if __name__ == "__main__":
    main()
