"""Builders for secure-aggregation tests: specs, inputs and machine snapshots."""

from __future__ import annotations

import os

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fedcore.secagg.client import Phase as ClientPhase
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.messages import ServerMessage
from fedcore.secagg.server import Phase as ServerPhase


def make_spec(
    n: int = 6,
    threshold: int = 4,
    *,
    dim: int = 16,
    mode: Mode = Mode.FULL,
    degree: int = 0,
    bit_width: int = 32,
    identities: tuple[bytes, ...] | None = None,
) -> RoundSpec:
    config = SecAggConfig(
        threshold=threshold,
        max_clients=max(n, 2),
        clip=1.0,
        bit_width=bit_width,
        mode=mode,
        degree=degree,
    )
    return RoundSpec(
        config=config,
        round_id=11,
        num_clients=n,
        dim=dim,
        graph_seed=b"g" * 32,
        identities=identities,
    )


def make_inputs(spec: RoundSpec, seed: int = 0) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {c: rng.integers(0, spec.config.levels + 1, spec.dim) for c in spec.clients}


def expected_sum(spec: RoundSpec, inputs, survivors) -> np.ndarray:
    total = sum((inputs[c].astype(object) for c in survivors), np.zeros(spec.dim, dtype=object))
    return np.array([int(v) % 2**spec.config.bit_width for v in total], dtype=object)


def signed_cohort(n: int = 6, threshold: int = 5, **kwargs: object) -> Cohort:
    identity = {c: Ed25519PrivateKey.from_private_bytes(os.urandom(32)) for c in range(1, n + 1)}
    publics = tuple(identity[c].public_key().public_bytes_raw() for c in range(1, n + 1))
    spec = make_spec(n, threshold, identities=publics, **kwargs)  # type: ignore[arg-type]
    return Cohort(spec, identity_keys=identity, record=True)


def snapshot(machine: object) -> object:
    """A deep, comparable picture of a machine's state."""
    return _freeze(vars(machine))


def _freeze(value: object) -> object:
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return ("dict", tuple((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return (type(value).__name__, tuple(_freeze(v) for v in items))
    return value  # immutable values, messages, key objects (compared by identity)


def advance(cohort: Cohort, until: ServerPhase) -> list[ServerMessage]:
    """Run a round without dropouts until the server enters `until`; return its undelivered output."""
    server, clients, inputs = cohort.server, cohort.clients, make_inputs(cohort.spec)
    outbound: list[ServerMessage] = []
    for c in clients.values():
        if server.phase is until:
            return outbound
        outbound += server.handle(c.advertise_keys())
    while server.phase is not until:
        replies = []
        for msg in outbound:
            replies += clients[msg.recipient].handle(msg)
            if clients[msg.recipient].phase is ClientPhase.MASK:
                replies.append(clients[msg.recipient].mask_input(inputs[msg.recipient]))
        outbound = [out for reply in replies for out in server.handle(reply)]
        if not outbound and server.phase is not until:
            raise AssertionError(f"the round stalled in {server.phase.name} before {until.name}")
    return outbound


@pytest.fixture
def spec() -> RoundSpec:
    return make_spec()
