"""The conformance kit's reference client: fedcore's Python SDK doing what the kit asks.

    python -m fedcore.conformance.reference_client ADDRESS CLIENT_ID --token TOKEN \\
        --add VALUE --examples N

What any client under test does (docs/protocol.md, "Conformance"): it joins with CLIENT_ID and
TOKEN; it has no initial parameters (it declines INITIALIZE tasks); a TRAIN task's local model
is the downloaded model with VALUE added to every floating-point element in the tensor's own
dtype (other dtypes unchanged), reported with N examples; an EVALUATE task reports a `loss`;
it takes part in unsigned secure rounds; it stops when the run is done. Prints one JSON line
(its summary) when it stops.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from fedcore.client import DeclineTask, EvalResult, FitResult
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Params


class AddValue:
    """A `ClientApp` whose training adds `add` to every floating-point element."""

    def __init__(self, add: float, examples: int) -> None:
        self.add, self.examples = add, examples

    def get_parameters(self) -> Params:
        """None of its own: the INITIALIZE task is declined (docs/protocol.md 4.2), and any
        model layout the coordinator sends is taken (the SDK trusts an app that raises here).

        Raises:
            DeclineTask: always.
        """
        raise DeclineTask("no initial parameters: this client takes its model from the "
                          "coordinator")

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        """The downloaded model plus `add`, computed in each tensor's dtype."""
        new = {k: (v + np.asarray(self.add, v.dtype) if np.issubdtype(v.dtype, np.floating)
                   else np.array(v, copy=True)) for k, v in params.items()}
        return FitResult(params=new, num_examples=self.examples, metrics={"loss": abs(self.add)})

    def evaluate(self, params: Params, config: TrainConfig) -> EvalResult:
        """A loss: the mean absolute value of the model."""
        values = [np.abs(v.astype(np.float64)).mean() for v in params.values() if v.size]
        return EvalResult(loss=float(np.mean(values)) if values else 0.0,
                          num_examples=self.examples)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reference client until the run is done; 0 when it ended normally."""
    from fedcore.transport.grpc.client import run_client

    p = argparse.ArgumentParser(prog="python -m fedcore.conformance.reference_client",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("address", help="host:port of the coordinator")
    p.add_argument("client_id", help="the id to join with")
    p.add_argument("--token", default="", help="the coordinator's shared token")
    p.add_argument("--add", type=float, required=True,
                   help="added to every floating-point element when training")
    p.add_argument("--examples", type=int, required=True, help="num_examples of each result")
    args = p.parse_args(argv)
    summary = run_client(AddValue(args.add, args.examples), args.address,
                         client_id=args.client_id, auth_token=args.token, max_reconnect_s=60.0)
    print(json.dumps({"client_id": summary.client_id, "tasks": summary.tasks_completed,
                      "rounds": summary.rounds, "finished": summary.finished}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
