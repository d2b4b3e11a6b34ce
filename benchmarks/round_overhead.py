"""Round overhead: fedcore's coordinator over real gRPC against bare gRPC streams (the floor).

`python -m benchmarks.round_overhead --clients 100 --params 1000000 [--rounds 4]` prints one
JSON line. Both sides move the same bytes on loopback with the same process layout:

- fedcore: a `CoordinatorServer` around a `RoundEngine` (FedAvg, every client selected each
  round, `min_available` = clients, no evaluation) in this process; the clients are real
  fedcore clients (`run_client` + `GrpcConnection`) that do no training (`fit` returns the
  parameters it was given), `--procs` worker processes hosting clients / procs threads each.
- floor (`benchmarks/_floor.py`): a bare grpc.aio server in this process streaming the same
  1 MiB chunks down and counting the same bytes coming up, driven by bare gRPC client threads
  laid out the same way; a unary gate stands in for the long-poll that opens each round.

`round_s` and `floor_s` are medians over the rounds after the first (which includes joining and
connection set-up) of the time from a round's opening to its closing as each server saw it
(fedcore: `RoundRecord.duration_s`). `ratio` is `round_s / floor_s`. `bytes_sent` and
`bytes_received` are per round from the coordinator's view: model payload bytes served by
`DownloadModel` and update payload bytes accepted by `SubmitResult`. `coord_cpu_s` and
`floor_cpu_s` are the CPU seconds per round the server process used (all its threads), which
is what fedcore's logic adds over the floor; `clients_cpu_s` and `floor_clients_cpu_s` are
the client worker processes' CPU seconds per round (their whole life, start-up included,
divided by the number of rounds). With `--trials N` the two sides alternate N times
and each figure is the median over trials.
"""

from __future__ import annotations

import argparse
import functools
import json
import multiprocessing as mp
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess

import numpy as np

from benchmarks import _floor
from fedcore.client import EvalResult, FitResult, run_client
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.engine.model import RoundModel
from fedcore.engine.records import RoundRecord
from fedcore.protocol.messages import TaskResult, TrainConfig
from fedcore.protocol.params import Params
from fedcore.strategy import FedAvg
from fedcore.transport.grpc.server import CoordinatorServer

DTYPE = np.float32


@dataclass(frozen=True, slots=True)
class Side:
    """One side's measured rounds (after the first)."""

    round_s: float
    cpu_s: float
    clients_cpu_s: float
    bytes_sent: int
    bytes_received: int
    all_rounds_s: list[float]


class EchoApp:
    """A client that does no training: `fit` hands back the model it was given."""

    def __init__(self, params: int) -> None:
        self._params = params

    def get_parameters(self) -> Params:
        return {"w": np.zeros(self._params, DTYPE)}

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        return FitResult(params=params, num_examples=1, metrics={"loss": 0.0})

    def evaluate(self, params: Params, config: TrainConfig) -> EvalResult:
        return EvalResult(loss=0.0, num_examples=1)


class CountingEngine(RoundEngine):
    """A `RoundEngine` that counts the payload bytes it serves and accepts."""

    sent = 0
    received = 0

    def model_for(self, client_id: str, task_id: str, *, now: float) -> RoundModel:
        model = super().model_for(client_id, task_id, now=now)
        self.sent += model.spec.nbytes
        return model

    def submit(self, result: TaskResult, *, now: float) -> None:
        nbytes = sum(t.nbytes for t in result.tensors.values())
        super().submit(result, now=now)
        self.received += nbytes


def fedcore_worker(address: str, client_ids: list[str], params: int) -> None:
    """A worker process: one `run_client` thread per id, until the coordinator says done."""

    def client(cid: str) -> None:
        summary = run_client(EchoApp(params), address, client_id=cid)
        if not summary.finished:
            raise RuntimeError(f"{cid} did not finish: {summary.last_error}")

    _floor.run_threads([functools.partial(client, cid) for cid in client_ids], "fedcore clients")


def _spawn(
    target: Callable[..., None], args_per_proc: list[tuple[object, ...]]
) -> list[SpawnProcess]:
    ctx = mp.get_context("spawn")  # no fork after gRPC has started threads
    procs = [ctx.Process(target=target, args=args, daemon=True) for args in args_per_proc]
    for p in procs:
        p.start()
    return procs


def _join(procs: list[SpawnProcess], what: str) -> None:
    for p in procs:
        p.join(60)
        if p.exitcode != 0:
            raise RuntimeError(f"a {what} worker exited with {p.exitcode}")


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def run_fedcore(clients: int, params: int, rounds: int, procs: int) -> Side:
    """Time `rounds` FedAvg rounds of `clients` echo clients on a `params`-float32 model."""
    engine = CountingEngine(
        EngineConfig(
            num_rounds=rounds,
            train=SelectionConfig(count=clients, min_available=clients, min_results=clients),
            evaluate=None,
            round_timeout_s=600.0,
            client_timeout_s=600.0,
        ),
        FedAvg(),
        initial_params={"w": np.zeros(params, DTYPE)},
    )
    marks: list[tuple[RoundRecord, float, int, int]] = []

    def on_round(record: RoundRecord) -> None:
        marks.append((record, _floor.cpu_s(), engine.sent, engine.received))

    server = CoordinatorServer(engine, on_round=on_round, linger_s=2.0, long_poll_s=5.0)
    port = server.start()
    address = f"127.0.0.1:{port}"
    children_before = _floor.children_cpu_s()
    ids = iter(f"bench-{i}" for i in range(clients))
    workers = _spawn(
        fedcore_worker,
        [(address, [next(ids) for _ in range(n)], params) for n in _split(clients, procs)],
    )
    if not server.wait(120.0 + 60.0 * rounds):
        server.stop()
        raise RuntimeError("the fedcore run did not finish in time")
    _join(workers, "fedcore client")
    clients_cpu = _floor.children_cpu_s() - children_before
    if len(marks) != rounds or any(m[0].status != "ok" for m in marks):
        raise RuntimeError(f"fedcore rounds did not all succeed: {[m[0] for m in marks]}")
    return _side([(m[0].duration_s, m[1], m[2], m[3]) for m in marks], clients_cpu)


def run_floor(clients: int, params: int, rounds: int, procs: int) -> Side:
    """The same bytes through bare gRPC streams, laid out like `run_fedcore`."""
    nbytes = params * np.dtype(DTYPE).itemsize
    server = _floor.FloorServer(clients=clients, rounds=rounds, nbytes=nbytes)
    port = server.start()
    children_before = _floor.children_cpu_s()
    workers = _spawn(
        _floor.run_worker, [(f"127.0.0.1:{port}", n, nbytes) for n in _split(clients, procs)]
    )
    if not server.wait(120.0 + 60.0 * rounds):
        raise RuntimeError("the floor run did not finish in time")
    _join(workers, "floor client")
    clients_cpu = _floor.children_cpu_s() - children_before
    marks = server.marks
    if len(marks) != rounds:
        raise RuntimeError(f"the floor closed {len(marks)} of {rounds} rounds")
    return _side(
        [(m.duration_s, m.cpu_s, m.bytes_sent, m.bytes_received) for m in marks], clients_cpu
    )


def _side(marks: list[tuple[float, float, int, int]], clients_cpu_s: float) -> Side:
    """Medians over the rounds after the first. `marks` holds, per round, its duration and the
    cumulative CPU seconds, bytes sent and bytes received when it closed."""
    durations = [m[0] for m in marks]
    later = range(1, len(marks))
    cpu = [marks[i][1] - marks[i - 1][1] for i in later]
    sent = [marks[i][2] - marks[i - 1][2] for i in later]
    received = [marks[i][3] - marks[i - 1][3] for i in later]
    return Side(
        round_s=statistics.median(durations[i] for i in later),
        cpu_s=statistics.median(cpu),
        clients_cpu_s=clients_cpu_s / len(marks),
        bytes_sent=int(statistics.median(sent)),
        bytes_received=int(statistics.median(received)),
        all_rounds_s=[round(d, 3) for d in durations],
    )


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument(
        "--rounds", type=int, default=4, help="rounds per side (the first is not timed)"
    )
    parser.add_argument("--procs", type=int, default=4, help="client worker processes per side")
    parser.add_argument("--trials", type=int, default=1, help="alternate the two sides this often")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.params < 1 or args.trials < 1 or args.rounds < 2:
        parser.error("clients, params and trials must be >= 1, rounds >= 2")
    procs = max(1, min(args.procs, args.clients))

    floors: list[Side] = []
    ours: list[Side] = []
    for _ in range(args.trials):
        floors.append(run_floor(args.clients, args.params, args.rounds, procs))
        ours.append(run_fedcore(args.clients, args.params, args.rounds, procs))

    round_s = statistics.median(s.round_s for s in ours)
    floor_s = statistics.median(s.round_s for s in floors)
    result: dict[str, object] = {
        "benchmark": "round_overhead",
        "clients": args.clients,
        "params": args.params,
        "rounds": args.rounds,
        "procs": procs,
        "trials": args.trials,
        "round_s": round(round_s, 4),
        "floor_s": round(floor_s, 4),
        "ratio": round(round_s / floor_s, 3),
        "bytes_sent": int(statistics.median(s.bytes_sent for s in ours)),
        "bytes_received": int(statistics.median(s.bytes_received for s in ours)),
        "floor_bytes_sent": int(statistics.median(s.bytes_sent for s in floors)),
        "floor_bytes_received": int(statistics.median(s.bytes_received for s in floors)),
        "coord_cpu_s": round(statistics.median(s.cpu_s for s in ours), 3),
        "floor_cpu_s": round(statistics.median(s.cpu_s for s in floors), 3),
        "clients_cpu_s": round(statistics.median(s.clients_cpu_s for s in ours), 3),
        "floor_clients_cpu_s": round(statistics.median(s.clients_cpu_s for s in floors), 3),
        "rounds_s": [s.all_rounds_s for s in ours],
        "floor_rounds_s": [s.all_rounds_s for s in floors],
    }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
