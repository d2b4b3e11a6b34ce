"""A client's side of one secure-aggregation round: its masked update and protocol machine.

The update never leaves the client in the clear: it is weighted, clipped, quantised and then
masked by `SecAggClient`; the coordinator only ever receives the masked vector. With distributed
DP in the setup, it is instead clipped to L2 norm C, sent unweighted, and this client adds its
share of integer noise before masking (`fedcore.dp.secagg_noise`: the guarantee and what it
assumes, e.g. that this client's rng is secret: it is seeded from `secrets`).
"""

from __future__ import annotations

import secrets

import numpy as np

from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.errors import FedcoreError
from fedcore.protocol.messages import ResultHeader, SecAggSetup, Task, TaskResult
from fedcore.protocol.params import Metrics, Params
from fedcore.protocol.specs import EMPTY_SPEC, spec_of
from fedcore.protocol.update import update_values
from fedcore.secagg import safety
from fedcore.secagg.client import Phase, SecAggClient
from fedcore.secagg.config import RoundSpec
from fedcore.secagg.errors import ProtocolError
from fedcore.secagg.messages import AdvertiseKeys, ClientMessage, ServerMessage
from fedcore.secagg.quantize import Quantizer, append_weight
from fedcore.secagg.roster import RosterError, SecAggIdentity
from fedcore.wire.secagg import client_payload


class SecureRefusal(FedcoreError):
    """The client refused a protocol step (e.g. a server asking for both secrets of a peer)."""


def round_spec(setup: SecAggSetup, identity: SecAggIdentity | None) -> RoundSpec:
    """The round this client runs: with the participants' keys from its roster, or unsigned.

    Raises:
        SecureRefusal: a client with an identity was offered an unsigned or unfit round, or
            one without an identity a signed round.
    """
    if identity is None:
        if setup.participants:
            raise SecureRefusal("the round is signed and this client has no identity: pass "
                                "secagg_identity (a key on the federation's roster)")
        return setup.spec
    try:
        spec = identity.signed_spec(setup.spec, client=setup.client,
                                    participants=setup.participants)
        safety.check_signed(spec)
    except (RosterError, safety.UnsafeRound) as err:
        raise SecureRefusal(f"secure aggregation refused: {err}") from err
    return spec


class SecureSession:
    """Holds the quantised update and drives the client machine through the phases."""

    def __init__(self, setup: SecAggSetup, update: Params, num_examples: int,
                 identity: SecAggIdentity | None = None,
                 rng: np.random.Generator | None = None) -> None:
        spec = round_spec(setup, identity)
        config = spec.config
        flat = np.concatenate([update_values(np.asarray(v)).ravel() for v in update.values()])
        # rounding and noise: `rng` (e.g. fedcore.dp.secure_random's CSPRNG), else PCG64
        rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
        if setup.distributed_dp is not None:
            encoding = NoisyEncoding.for_round(setup.distributed_dp, config, setup.spec.dim)
            self._vector = encoding.encode(flat, rng)
        else:
            weight = min(num_examples / setup.weight_cap, 1.0)
            vector = append_weight(flat * weight, weight, clip=config.clip)
            if vector.size != setup.spec.dim:
                raise ValueError(f"the update has {vector.size - 1} values, the round expects "
                                 f"{setup.spec.dim - 1}")
            self._vector = Quantizer.from_config(config).quantize(vector, rng)
        self._machine = SecAggClient(spec, setup.client,
                                     identity_key=identity.key if identity else None)

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


def start_secure(
    task: Task, client_id: str, update: Params, num_examples: int, metrics: Metrics,
    identity: SecAggIdentity | None = None, rng: np.random.Generator | None = None,
) -> tuple[SecureSession, TaskResult]:
    """After training in a secure round: the session and the result that advertises its keys.

    The result carries no tensors: the update stays in the session until it is masked.
    `rng` draws the stochastic rounding and distributed-DP noise (None: PCG64 from `secrets`).
    """
    if not isinstance(task.secagg, SecAggSetup):
        raise TypeError(f"{task.task_id} is not a secure-aggregation training task")
    session = SecureSession(task.secagg, update, num_examples, identity, rng)
    header = ResultHeader(client_id=client_id, task_id=task.task_id, num_examples=1,
                          metrics=dict(metrics), secagg=session.start())
    return session, TaskResult(header=header)


def secure_step(session: SecureSession, task: Task, client_id: str) -> TaskResult:
    """The result answering one secure-aggregation step of `task`.

    Raises:
        SecureRefusal: the step asks for something the protocol forbids; nothing is released
            and the session must not be used again.
    """
    if task.secagg is None or isinstance(task.secagg, SecAggSetup):
        raise ValueError(f"{task.task_id}: a secure-aggregation step carries no message")
    try:
        reply = session.step(task.secagg)
    except (ProtocolError, ValueError) as err:
        raise SecureRefusal(f"secure aggregation refused: {err}") from err
    tensors = client_payload(reply)
    header = ResultHeader(
        client_id=client_id, task_id=task.task_id, num_examples=1,
        spec=spec_of(tensors) if tensors else EMPTY_SPEC, secagg=reply,
    )
    return TaskResult(header=header, tensors=tensors)
