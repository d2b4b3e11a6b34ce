"""A deliberately broken client for the conformance kit's tests: fedcore's reference client
with one flaw, so the kit's report can be shown to name it.

    python broken_conformance_client.py --flaw FLAW ADDRESS CLIENT_ID --token T --add A \\
        --examples N

FLAW: `model-not-update` sends its local model where the update (local - global) belongs;
`ignore-hints` polls again at once after a Wait or a decline instead of waiting the
retry_after_s it was given.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np

from fedcore.client import FitResult
from fedcore.client.loop import ClientLoop
from fedcore.conformance import reference_client
from fedcore.protocol.messages import Wait
from fedcore.transport.grpc.client_connection import GrpcConnection


class SendsTheModel(reference_client.AddValue):
    def fit(self, params, config):
        # the SDK subtracts the global model; adding it once more leaves the local model
        local = super().fit(params, config).params
        return FitResult(params={k: v + params[k] if np.issubdtype(v.dtype, np.floating) else v
                                 for k, v in local.items()},
                         num_examples=self.examples, metrics={"loss": 0.0})


def main() -> int:
    argv = sys.argv[1:]
    flaw = argv[argv.index("--flaw") + 1]
    del argv[argv.index("--flaw"):argv.index("--flaw") + 2]
    if flaw == "model-not-update":
        reference_client.AddValue = SendsTheModel  # type: ignore[misc]
    elif flaw == "ignore-hints":
        ClientLoop._wait_as_told = lambda self, reply: None  # type: ignore[method-assign]
        get_task = GrpcConnection.get_task

        def no_waiting(self, *args, **kwargs):
            reply = get_task(self, *args, **kwargs)
            return dataclasses.replace(reply, retry_after_s=0.0) if isinstance(reply, Wait) else reply

        GrpcConnection.get_task = no_waiting  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown flaw {flaw}")
    return reference_client.main(argv)


if __name__ == "__main__":
    sys.exit(main())
