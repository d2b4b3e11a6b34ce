"""Secure FedBuff's group size at the secure aggregation's ceiling, pinned: a buffer of exactly
`max_clients` is a group the protocol can run (it opens and steps), one more is refused when
the engine is built, and a buffer of two (the smallest secure sum) is accepted."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.engine.buffered import BufferedConfig
from fedcore.engine.buffered_secure import SecureBufferedEngine
from fedcore.engine.config import SecureAggregationConfig
from fedcore.protocol.messages import Task
from fedcore.strategy import FedAvg

from .test_buffered_secure import DIM, Clients

AT_THREE = SecureAggregationConfig(max_clients=3, clip=1.0, weight_cap=10, phase_timeout_s=30.0)


def _engine(k: int) -> SecureBufferedEngine:
    config = BufferedConfig(buffer_size=k, concurrency=4, num_updates=1)
    return SecureBufferedEngine(config, FedAvg(), {"w": np.zeros(DIM, np.float32)}, AT_THREE)


def test_a_buffer_of_exactly_max_clients_is_a_group_that_steps() -> None:
    engine = _engine(3)
    clients = Clients(engine, {"a": 0.2, "b": 0.2, "c": 0.2})
    for cid in "ab":
        engine.poll(cid, now=0.0)
    task = engine.poll("c", now=0.0)
    assert isinstance(task, Task) and engine.members_of(task.task_id) == {"a", "b", "c"}
    clients.finish(["a", "b", "c"], task.task_id)
    assert engine.version == 1
    np.testing.assert_allclose(engine.params["w"], 0.2, atol=1e-5)


def test_a_buffer_above_max_clients_is_refused_and_two_is_the_smallest() -> None:
    with pytest.raises(ValueError, match="max_clients"):
        _engine(4)
    with pytest.raises(ValueError, match="buffer_size >= 2"):
        _engine(1)
    assert _engine(2).config.buffer_size == 2
