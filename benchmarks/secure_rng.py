"""The cost of a client's `secure_rng`: the same work with the default and the secure randomness.

`python -m benchmarks.secure_rng --values 1000000 --repeats 5` prints one JSON line:
- `quantize_*_s`: stochastic rounding of `values` floats (`Quantizer.quantize`) with numpy's
  PCG64 (`default`) and with the AES-128-CTR generator of `fedcore.dp.secure_random` (`secure`);
- `noise_*_s`: Skellam noise for `values` coordinates (`NoisyEncoding.sample_noise`, z = 1,
  C = 1, 32-bit words, 100 clients, threshold 10), same two generators;
- `dpsgd_epoch_*_s`: one DP-SGD epoch (`train_private`) of a 784-128-10 MLP on 2,048 random
  examples, batch 64, on the CPU, with `secure_mode` off and on (per-step refills from
  `os.urandom` and Opacus' four-Gaussian noise).
Each `*_s` is the median of `repeats` runs, all in this process; `*_ratio` is secure / default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import train_private
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.dp.secure_random import client_generator
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig
from fedcore.secagg.quantize import Quantizer


def median_s(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def numpy_costs(values: int, repeats: int) -> dict[str, float]:
    config = SecAggConfig(threshold=10, max_clients=100, clip=1.0, bit_width=32)
    quantizer = Quantizer.from_config(config)
    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=1.0, clip_norm=1.0),
                                       config, values + 1)
    x = np.random.default_rng(0).uniform(-1, 1, values)
    out: dict[str, float] = {}
    for mode, secure in (("default", False), ("secure", True)):
        rng = client_generator(secure=secure)
        out[f"quantize_{mode}_s"] = median_s(lambda: quantizer.quantize(x, rng), repeats)
        out[f"noise_{mode}_s"] = median_s(lambda: encoding.sample_noise(rng), repeats)
    return out


def dpsgd_epoch_s(secure: bool, repeats: int) -> float:
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(2048, 784, generator=gen),
                         torch.randint(0, 10, (2048,), generator=gen))
    loader = DataLoader(data, batch_size=64)

    def epoch() -> None:
        model = nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
        train_private(model=model, optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=0.05),
                      data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0, epochs=1,
                      accountant=PrivacyAccountant(), delta=1e-5, secure_mode=secure)

    epoch()  # warm-up: Opacus' hooks, torch kernels
    return median_s(epoch, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--values", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # Opacus' "secure RNG turned off" note, every epoch
    out: dict[str, object] = {"benchmark": "secure_rng", "values": args.values,
                              "repeats": args.repeats, "torch_threads": args.threads}
    out.update(numpy_costs(args.values, args.repeats))
    out["dpsgd_epoch_default_s"] = dpsgd_epoch_s(False, args.repeats)
    out["dpsgd_epoch_secure_s"] = dpsgd_epoch_s(True, args.repeats)
    for name in ("quantize", "noise", "dpsgd_epoch"):
        out[f"{name}_ratio"] = round(
            float(out[f"{name}_secure_s"]) / float(out[f"{name}_default_s"]), 3)  # type: ignore[arg-type]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
