"""A client process for integration tests: NumPy only, adds a constant to every parameter.

    python numpy_client.py ADDRESS CLIENT_ID --add 1.0 [--examples 10]
        [--fit-marker PATH] [--wait-for PATH] [--hang-in-fit] [--gate-from N]
        [--tls-ca PEM [--tls-cert PEM --tls-key PEM]] [--auth-token TOKEN]

--fit-marker, --wait-for and --hang-in-fit act from the N-th fit on (--gate-from, default 1).

Prints a JSON summary on exit.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fedcore.client import EvalResult, FitResult, run_client
from fedcore.transport.grpc.tls import channel_credentials


class AddConstant:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.fits = 0

    def get_parameters(self):
        return {"w": np.zeros(4, np.float32)}

    def fit(self, params, config):
        self.fits += 1
        gated = self.fits >= (getattr(self.args, "gate_from", None) or 1)
        if gated and self.args.fit_marker:
            Path(self.args.fit_marker).touch()
        if gated and self.args.hang_in_fit:
            time.sleep(3600)
        if gated and self.args.wait_for:
            while not Path(self.args.wait_for).exists():
                time.sleep(0.02)
        new = {k: v + np.asarray(self.args.add, v.dtype) for k, v in params.items()}
        return FitResult(params=new, num_examples=self.args.examples, metrics={"loss": self.args.add})

    def evaluate(self, params, config):
        return EvalResult(loss=float(np.abs(params["w"]).mean()), num_examples=self.args.examples,
                          metrics={"accuracy": 0.5})


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("client_id")
    p.add_argument("--add", type=float, default=1.0)
    p.add_argument("--examples", type=int, default=10)
    p.add_argument("--fit-marker")
    p.add_argument("--wait-for")
    p.add_argument("--hang-in-fit", action="store_true")
    p.add_argument("--gate-from", type=int, default=1)
    p.add_argument("--tls-ca")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--auth-token", default="")
    args = p.parse_args()
    credentials = channel_credentials(args.tls_ca, args.tls_cert, args.tls_key) if args.tls_ca else None
    summary = run_client(AddConstant(args), args.address, client_id=args.client_id,
                         max_reconnect_s=30.0, credentials=credentials, auth_token=args.auth_token)
    print(json.dumps({"client_id": summary.client_id, "tasks": summary.tasks_completed,
                      "rounds": summary.rounds, "finished": summary.finished}))
    assert "torch" not in sys.modules, "the NumPy-only client must not import torch"
    return 0


if __name__ == "__main__":
    sys.exit(main())
