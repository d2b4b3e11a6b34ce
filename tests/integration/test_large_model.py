"""A model of 50 million float32 parameters (200 MB) to a client and back over real gRPC.

The coordinator runs in a subprocess so that its peak resident memory (`ru_maxrss`) is its own;
the client runs in the test process. One FedAvg round; the client adds a known constant, so the
new global model must equal the initial one plus that constant, exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from fedcore.client import EvalResult, FitResult, run_client
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params

PARAMS = 50_000_000
MODEL_BYTES = PARAMS * 4
CONSTANT = 1.0
# The coordinator's peak may be at most this many model sizes above its baseline (interpreter,
# fedcore, gRPC, before the model exists). Measured at about 6.2x: while it folds an update it
# holds the global model (1x), the exact running sum (a float64 pair per element: 4x a float32
# model, the price of order-independent averaging, docs/protocol.md 5.3) and the received
# update (1x); at the close the mean reuses the sum's first half, so FedAvg.apply's new model
# adds nothing to the peak. Downloads stream from the model itself (no encoded copy). More than
# this means copies crept into the transport or the engine.
MAX_MODEL_COPIES = 7

COORDINATOR = """
import json, resource, sys
import numpy as np
from fedcore.engine import EngineConfig, RoundEngine, SelectionConfig
from fedcore.strategy import FedAvg
from fedcore.transport.grpc.server import CoordinatorServer

def maxrss():
    # VmHWM: this process's own peak. (ru_maxrss also counts the parent's size at fork, which
    # the kernel carries across exec, so a large pytest process would hide the real figure.)
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

def initial(start, stop):  # exactly representable values, computed slice by slice
    return (np.arange(start, stop, dtype=np.int64) % 1024).astype(np.float32) * 0.25

n, constant = int(sys.argv[1]), float(sys.argv[2])
step = 1 << 20
baseline = maxrss()
model = np.empty(n, dtype=np.float32)
for i in range(0, n, step):
    model[i : i + step] = initial(i, min(i + step, n))
engine = RoundEngine(
    EngineConfig(
        num_rounds=1,
        train=SelectionConfig(count=1, min_available=1, min_results=1),
        evaluate=None,
        round_timeout_s=300.0,
    ),
    FedAvg(),
    initial_params={"w": model},
)
del model  # the engine keeps its own encoded copy
server = CoordinatorServer(engine, linger_s=1.0, long_poll_s=2.0)
print(json.dumps({"port": server.start()}), flush=True)
finished = server.wait(300)
peak = maxrss()  # before the check below, which allocates only small slices
record = engine.records[0] if engine.records else None
w = engine.params["w"]
exact = finished and w.shape == (n,) and all(
    np.array_equal(w[i : i + step], initial(i, min(i + step, n)) + np.float32(constant))
    for i in range(0, n, step)
)
print(json.dumps({
    "finished": finished, "exact": bool(exact), "status": record.status if record else None,
    "baseline_bytes": baseline, "peak_bytes": peak,
}), flush=True)
"""


class AddConstant:
    """Training that adds `CONSTANT` to every parameter."""

    def get_parameters(self) -> Params:
        raise AssertionError("the coordinator has initial parameters")

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        return FitResult(
            params={k: np.add(v, np.float32(CONSTANT)) for k, v in params.items()}, num_examples=3
        )

    def evaluate(self, params: Params, config: TrainConfig) -> EvalResult:
        return EvalResult(loss=0.0, num_examples=1)


def test_a_200mb_model_goes_to_a_client_and_back_within_a_few_model_sizes() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", COORDINATOR, str(PARAMS), str(CONSTANT)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        summary = run_client(AddConstant(), f"127.0.0.1:{port}", client_id="big")
        report = json.loads(proc.stdout.readline())
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert summary.finished and summary.tasks_completed == 1, summary
    assert report["finished"] and report["status"] == "ok", report
    assert report["exact"], "the new global model is not initial + constant"
    above = report["peak_bytes"] - report["baseline_bytes"]
    print(
        f"\ncoordinator peak RSS {report['peak_bytes'] / 2**20:.0f} MiB, baseline "
        f"{report['baseline_bytes'] / 2**20:.0f} MiB, {above / 2**20:.0f} MiB above it = "
        f"{above / MODEL_BYTES:.2f}x the model ({MODEL_BYTES / 1e6:.0f} MB, {PARAMS} float32)"
    )
    assert above < MAX_MODEL_COPIES * MODEL_BYTES, report
