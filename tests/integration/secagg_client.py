"""A client process for secure-aggregation tests: adds a per-client constant, may die mid-round.

    python secagg_client.py ADDRESS CLIENT_ID --add 0.01 --examples 10 [--die-at-step N]
        [--secagg-key KEY --secagg-roster ROSTER]

`--die-at-step N` ends the process abruptly (os._exit) when the N-th secure-aggregation step
of the first round arrives: 1 = the key list (dies before sharing), 2 = the share relay
(dies before masking), 3 = the unmask request (dies before unmasking); in signed rounds 3 is
the consistency request (dies before signing) and 4 the unmask request.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from fedcore.client import EvalResult, FitResult, run_client
from fedcore.client.events import Callbacks, Selected
from fedcore.protocol.messages import TaskKind
from fedcore.storage.identity_files import load_identity


class AddConstant:
    def __init__(self, add: float, examples: int) -> None:
        self.add, self.examples = add, examples

    def get_parameters(self):
        return {"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32)}

    def fit(self, params, config):
        new = {k: v + np.float32(self.add) for k, v in params.items()}
        return FitResult(params=new, num_examples=self.examples, metrics={"loss": self.add})

    def evaluate(self, params, config):
        return EvalResult(loss=0.0, num_examples=self.examples)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("client_id")
    p.add_argument("--add", type=float, required=True)
    p.add_argument("--examples", type=int, default=10)
    p.add_argument("--die-at-step", type=int, default=0)
    p.add_argument("--secagg-key")
    p.add_argument("--secagg-roster")
    args = p.parse_args()
    identity = (load_identity(args.client_id, args.secagg_key, args.secagg_roster)
                if args.secagg_key else None)
    steps = 0

    def on_selected(event: Selected) -> None:
        nonlocal steps
        if event.kind is TaskKind.SECAGG and event.round == 1:
            steps += 1
            if steps == args.die_at_step:
                os._exit(3)

    summary = run_client(AddConstant(args.add, args.examples), args.address,
                         client_id=args.client_id, max_reconnect_s=30.0,
                         callbacks=Callbacks(on_selected=on_selected), secagg_identity=identity)
    print(json.dumps({"client_id": summary.client_id, "finished": summary.finished}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
