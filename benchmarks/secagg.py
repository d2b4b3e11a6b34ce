"""Secure aggregation cost against plain summation, in one process, printed as one JSON line.

    python -m benchmarks.secagg --clients N --dim D --dropout F [--mode full|secagg+] [--workers K]
        [--signed]

Every client's update is drawn, clipped and quantised, then the round runs through the
in-memory Cohort (the same machines as deployment). Dropped clients vanish after sharing
their keys and before sending their masked input, the costliest case for the server (it
must rebuild their pairwise masks). Reported per client: the median compute of a
surviving client (`client_s`, quantisation included) and bytes sent and received;
for the server: all its compute (`server_s`); `plain_s` is summing the same quantised
vectors in the clear; `correct` compares the unmasked sum with that plaintext sum.
`--signed` runs a signed round (Ed25519 identities: signed keys, the consistency check).
The server unmasks inline, or through a pool of `--workers` processes started before the
round as a long-lived server would hold it (it pays only where cores are idle: on the
loaded 2-core development machine inline was faster). `load` is the machine's 1-minute
load average before and after the run, since others' work shows in every timing;
`server_cpu_s` is the server's CPU time in this process (worker processes not counted),
which others' load inflates far less than `server_s`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg import prg
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import (
    Mode,
    RoundSpec,
    SecAggConfig,
    suggested_degree,
    suggested_signed_degree,
)
from fedcore.secagg.errors import RoundAborted
from fedcore.secagg.messages import MaskedInput
from fedcore.secagg.quantize import Quantizer
from fedcore.secagg.safety import least_signed_threshold

Ints = npt.NDArray[np.unsignedinteger]


class Updates(Mapping[int, Ints]):
    """Each client's quantised update, regenerated on demand (memory O(dim), not O(n dim))."""

    def __init__(self, quantizer: Quantizer, num_clients: int, dim: int, seed: int) -> None:
        self._quantizer, self._n, self._dim, self._seed = quantizer, num_clients, dim, seed

    def __getitem__(self, client: int) -> Ints:
        rng = np.random.default_rng([self._seed, client])
        update = rng.standard_normal(self._dim, dtype=np.float32) * np.float32(0.05)
        return self._quantizer.quantize(update, rng)

    def __iter__(self) -> Iterator[int]:
        return iter(range(1, self._n + 1))

    def __len__(self) -> int:
        return self._n


def _config(args: argparse.Namespace) -> SecAggConfig:
    mode = Mode(args.mode)
    suggest = suggested_signed_degree if args.signed else suggested_degree
    degree = min(args.degree or suggest(args.clients), args.clients - 1)
    config = SecAggConfig(threshold=1, max_clients=args.clients, clip=1.0,
                          bit_width=args.bit_width, mode=mode, degree=degree)
    if args.threshold:
        least = args.threshold
    elif args.signed:
        least = least_signed_threshold(config, args.clients)
    elif mode is Mode.FULL:
        least = args.clients * 2 // 3 + 1
    else:
        least = min(degree + degree % 2 + 1, args.clients) // 2 + 1
    return replace(config, threshold=least)


def _plain_sum(
    updates: Updates, survivors: tuple[int, ...], dim: int, dtype: np.dtype
) -> tuple[Ints, float]:
    vectors = [updates[c] for c in survivors]
    start = time.perf_counter()
    total = np.zeros(dim, dtype=dtype)
    for vector in vectors:
        np.add(total, vector, out=total)
    return total, time.perf_counter() - start


def _mask_rates(dim: int) -> tuple[float, float]:
    """GB/s of mask words: AES-CTR expansion alone, and expansion plus the wrapping add."""
    acc = np.zeros(dim, dtype=np.uint32)
    expander = prg.MaskExpander(dim, np.uint32)
    reps = max(3, int(4e8 // (4 * dim)))
    seeds = [i.to_bytes(32, "little") for i in range(reps)]
    start = time.perf_counter()
    for seed in seeds:
        expander.fill(seed)
    expand_s = time.perf_counter() - start
    start = time.perf_counter()
    for seed in seeds:
        expander.add(acc, seed)
    add_s = time.perf_counter() - start
    return reps * acc.nbytes / expand_s / 1e9, reps * acc.nbytes / add_s / 1e9


def _pool(workers: int) -> contextlib.AbstractContextManager[Executor | None]:
    """A started pool of `workers` processes, or None for 0."""
    if workers == 0:
        return contextlib.nullcontext()
    pool = ProcessPoolExecutor(workers)
    list(pool.map(abs, range(workers)))  # start the workers outside the timed round
    return pool


def run(args: argparse.Namespace) -> dict[str, object]:
    """Run one round and return the measurements."""
    load_before = os.getloadavg()[0]
    config = _config(args)
    identity_keys = ({c: Ed25519PrivateKey.generate() for c in range(1, args.clients + 1)}
                     if args.signed else {})
    spec = RoundSpec(config=config, round_id=1, num_clients=args.clients, dim=args.dim,
                     graph_seed=os.urandom(32),
                     identities=tuple(k.public_key().public_bytes_raw()
                                      for k in identity_keys.values()) if args.signed else None)
    quantizer = Quantizer.from_config(config)
    updates = Updates(quantizer, args.clients, args.dim, args.seed)
    dropped = set(range(1, round(args.dropout * args.clients) + 1))
    start = time.perf_counter()
    quantize_s = (updates[1], time.perf_counter() - start)[1]
    with _pool(args.workers) as executor:
        cohort = Cohort(spec, executor=executor, identity_keys=identity_keys)
        try:
            result = cohort.run(updates, drops={MaskedInput: dropped})
        except RoundAborted as err:  # e.g. a signed round whose degree is too low for its dropouts
            return {"clients": args.clients, "dim": args.dim, "dropout": args.dropout,
                    "mode": args.mode, "signed": args.signed, "threshold": config.threshold,
                    "degree": config.even_degree, "aborted": str(err),
                    "refusals": len(cohort.refusals), "correct": False}
    survivors = result.survivors
    expected, plain_s = _plain_sum(updates, survivors, args.dim, result.total.dtype)
    if config.bit_width < 8 * expected.dtype.itemsize:
        expected &= expected.dtype.type((1 << config.bit_width) - 1)
    expand_gbps, add_gbps = _mask_rates(args.dim)
    client_s = statistics.median(cohort.client_seconds[c] for c in survivors) + quantize_s
    bytes_up = statistics.mean(cohort.bytes_up[c] for c in survivors)
    return {
        "clients": args.clients,
        "dim": args.dim,
        "dropout": args.dropout,
        "mode": args.mode,
        "signed": args.signed,
        "threshold": config.threshold,
        "degree": config.even_degree if config.mode is Mode.SECAGG_PLUS else args.clients - 1,
        "bit_width": config.bit_width,
        "survivors": len(survivors),
        "client_s": round(client_s, 4),
        "client_max_s": round(max(cohort.client_seconds[c] for c in survivors) + quantize_s, 4),
        "server_s": round(cohort.server_seconds, 4),
        "server_cpu_s": round(cohort.server_cpu_seconds, 4),
        "plain_s": round(plain_s, 4),
        "bytes_up": round(bytes_up),
        "bytes_down": round(statistics.mean(cohort.bytes_down[c] for c in survivors)),
        "expansion": round(bytes_up / (4 * args.dim), 4),
        "prg_gbps": round(expand_gbps, 2),
        "mask_add_gbps": round(add_gbps, 2),
        "workers": args.workers,
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "correct": bool(np.array_equal(result.total, expected)),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--dim", type=lambda s: int(float(s)), required=True)
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.FULL.value)
    parser.add_argument(
        "--threshold", type=int, default=0,
        help="default: 2n/3+1, or in secagg+ half a neighbourhood, +1; signed: the least a "
             "client accepts (fedcore.secagg.safety.least_signed_threshold)"
    )
    parser.add_argument(
        "--degree", type=int, default=0,
        help="secagg+ degree; default 2 ceil(log2 n), signed: twice that"
    )
    parser.add_argument("--bit-width", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes the server unmasks with (default 0: inline)",
    )
    parser.add_argument("--signed", action="store_true",
                        help="signed round: identity keys, signatures, consistency check")
    args = parser.parse_args(argv)
    if args.workers < 0:
        parser.error("--workers must be >= 0")
    if not 0 <= args.dropout < 1 or math.isnan(args.dropout):
        parser.error("--dropout must be in [0, 1)")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
