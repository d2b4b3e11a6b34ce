"""A client's side of one secure-aggregation round: its masked update and protocol machine.

The update never leaves the client in the clear: it is weighted, clipped, quantised and then
masked by `SecAggClient`; the coordinator only ever receives the masked vector.
"""

from __future__ import annotations

import secrets

import numpy as np

from fedcore.messages import SecAggSetup
from fedcore.params import Params
from fedcore.secagg.client import Phase, SecAggClient
from fedcore.secagg.messages import AdvertiseKeys, ClientMessage, ServerMessage
from fedcore.secagg.quantize import Quantizer, append_weight


class SecureSession:
    """Holds the quantised update and drives the client machine through the phases."""

    def __init__(self, setup: SecAggSetup, update: Params, num_examples: int) -> None:
        config = setup.spec.config
        weight = min(num_examples / setup.weight_cap, 1.0)
        flat = np.concatenate([np.asarray(v, np.float64).ravel() for v in update.values()])
        vector = append_weight(flat * weight, weight, clip=config.clip)
        if vector.size != setup.spec.dim:
            raise ValueError(f"the update has {vector.size - 1} values, the round expects "
                             f"{setup.spec.dim - 1}")
        rng = np.random.default_rng(secrets.randbits(128))
        self._vector = Quantizer.from_config(config).quantize(vector, rng)
        self._machine = SecAggClient(setup.spec, setup.client)

    @property
    def finished(self) -> bool:
        """Whether the client has nothing more to send in this round."""
        return self._machine.phase is Phase.DONE

    def start(self) -> AdvertiseKeys:
        """Phase 1: the client's public keys."""
        return self._machine.advertise_keys()

    def step(self, msg: ServerMessage) -> ClientMessage:
        """Answer a server message (after the share relay: the masked input).

        Raises:
            ProtocolError: the server asked for something the protocol forbids (e.g. both
                secrets of one client); nothing is released.
        """
        replies = self._machine.handle(msg)
        if self._machine.phase is Phase.MASK:
            return self._machine.mask_input(self._vector)
        if len(replies) != 1:
            raise ValueError(f"expected one reply to {type(msg).__name__}, got {len(replies)}")
        return replies[0]
