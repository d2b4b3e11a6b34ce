"""A deliberately broken client for the conformance kit's tests: fedcore's reference client
with one flaw, so the kit's report can be shown to name it.

    python broken_conformance_client.py --flaw FLAW ADDRESS CLIENT_ID --token T --add A \\
        --examples N

FLAW: `model-not-update` sends its local model where the update (local - global) belongs;
`ignore-hints` polls again at once after a decline instead of waiting the reply's
retry_after_s.
"""

from __future__ import annotations

import sys

import numpy as np

from fedcore.client import FitResult
from fedcore.client.loop import ClientLoop
from fedcore.conformance import reference_client


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
    else:
        raise SystemExit(f"unknown flaw {flaw}")
    return reference_client.main(argv)


if __name__ == "__main__":
    sys.exit(main())
