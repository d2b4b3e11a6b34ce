"""TLS overhead: the same rounds over plaintext, TLS and mutual TLS, in one run.

`python -m benchmarks.tls_overhead --clients 4 --params 1000000 --rounds 5` prints one JSON
line. A `CoordinatorServer` (FedAvg, every client each round, no evaluation) in this process;
clients are `BackgroundClient` threads whose `fit` returns the parameters unchanged. `*_s` are
medians of `RoundRecord.duration_s` over the rounds after the first (joins and handshakes);
`tls_ratio` and `mtls_ratio` are relative to plaintext.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from fedcore.client import BackgroundClient, EvalResult, FitResult
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.strategy import FedAvg
from fedcore.transport.certs import generate_pki
from fedcore.transport.grpc.server import CoordinatorServer
from fedcore.transport.grpc.tls import channel_credentials, server_credentials


class Echo:
    def __init__(self, params: int) -> None:
        self.params = params

    def get_parameters(self) -> dict[str, np.ndarray]:
        return {"w": np.zeros(self.params, np.float32)}

    def fit(self, params: dict[str, np.ndarray], config: object) -> FitResult:
        return FitResult(params=params, num_examples=1, metrics={})

    def evaluate(self, params: dict[str, np.ndarray], config: object) -> EvalResult:
        return EvalResult(loss=0.0, num_examples=1, metrics={})


def median_round_s(mode: str, pki: Path, clients: int, params: int, rounds: int) -> float:
    engine = RoundEngine(
        EngineConfig(num_rounds=rounds, evaluate=None,
                     train=SelectionConfig(fraction=1.0, min_results=clients, min_available=clients)),
        FedAvg(), initial_params={"w": np.zeros(params, np.float32)},
    )
    creds = None if mode == "plain" else server_credentials(
        pki / "server.pem", pki / "server-key.pem", pki / "ca.pem" if mode == "mtls" else None
    )
    server = CoordinatorServer(engine, credentials=creds, long_poll_s=1.0, linger_s=0.5)
    port = server.start()
    client_creds = None if mode == "plain" else channel_credentials(
        pki / "ca.pem", *((pki / "client-1.pem", pki / "client-1-key.pem") if mode == "mtls" else ())
    )
    runners = [BackgroundClient(Echo(params), f"localhost:{port}", client_id=f"c{k}",
                                credentials=client_creds) for k in range(clients)]
    for r in runners:
        r.start()
    server.wait(600)
    for r in runners:
        r.stop(10)
    return statistics.median(r.duration_s for r in engine.records[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--params", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pki = Path(tmp)
        generate_pki(pki, clients=1)
        times = {m: median_round_s(m, pki, args.clients, args.params, args.rounds)
                 for m in ("plain", "tls", "mtls")}
    print(json.dumps({
        "benchmark": "tls_overhead", "clients": args.clients, "params": args.params,
        "rounds": args.rounds, "plain_s": times["plain"], "tls_s": times["tls"],
        "mtls_s": times["mtls"], "tls_ratio": times["tls"] / times["plain"],
        "mtls_ratio": times["mtls"] / times["plain"],
    }))


if __name__ == "__main__":
    main()
