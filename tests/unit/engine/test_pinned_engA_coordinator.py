"""The FedBuff coordinator's sessions and model downloads, pinned: a registry passed in is the
one clients join (with the properties they announce, none when they announce none), and the
download of a model version is cached while a task trains from it and released once none does
(the coordinator never keeps a version the engine let go)."""

from __future__ import annotations

import gc
import weakref

import numpy as np

from fedcore.engine import EngineConfig
from fedcore.engine.buffered import BufferedConfig, BufferedEngine
from fedcore.engine.buffered_coordinator import BufferedCoordinator
from fedcore.engine.registry import Registry
from fedcore.protocol.messages import ResultHeader, Task, TaskResult
from fedcore.strategy import FedAvg


def _engine(k: int = 1, concurrency: int = 2, updates: int = 3) -> BufferedEngine:
    return BufferedEngine(BufferedConfig(buffer_size=k, concurrency=concurrency,
                                         num_updates=updates, task_timeout_s=50.0),
                          FedAvg(), {"w": np.zeros(2, np.float64)})


def _task(facade: BufferedCoordinator, cid: str, now: float) -> Task:
    reply = facade.poll(cid, now=now)
    assert isinstance(reply, Task), reply
    return reply


def _answer(facade: BufferedCoordinator, task: Task, cid: str, delta: float, now: float) -> None:
    facade.submit(TaskResult(header=ResultHeader(client_id=cid, task_id=task.task_id,
                                                 num_examples=1),
                             tensors={"w": np.full(2, delta)}), now=now)


def test_clients_join_the_registry_passed_in_with_the_properties_they_announce() -> None:
    registry = Registry(1e9)
    registry.join("z", now=0.0, properties={})  # one client already in it
    facade = BufferedCoordinator(_engine(), EngineConfig(num_rounds=1), registry=registry)
    token = facade.join("a", now=3.0, properties={"os": "linux", "cores": "4"})
    assert len(registry) == 2
    assert registry.authenticate("a", token, 3.0).properties == {"os": "linux", "cores": "4"}
    bare = facade.join("b", now=3.0)
    assert registry.authenticate("b", bare, 3.0).properties == {}
    assert sorted(facade.available_clients(3.0)) == ["a", "b", "z"]


def test_a_versions_download_is_shared_while_held_and_released_after() -> None:
    engine = _engine(k=1, concurrency=2, updates=3)
    facade = BufferedCoordinator(engine, EngineConfig(num_rounds=1))
    for cid in ("a", "b"):
        facade.authenticate(cid, facade.join(cid, now=0.0), now=0.0)
    first = _task(facade, "a", 10.0)
    slow = _task(facade, "b", 10.0)  # b trains from version 0 too
    model0 = facade.model_for("a", first.task_id, now=10.0)
    assert facade.model_for("b", slow.task_id, now=10.0) is model0  # one copy per version
    np.testing.assert_array_equal(model0.params["w"], [0.0, 0.0])
    _answer(facade, first, "a", 1.0, 11.0)  # version 1; b still holds version 0
    second = _task(facade, "a", 12.0)
    model1 = facade.model_for("a", second.task_id, now=12.0)
    np.testing.assert_array_equal(model1.params["w"], [1.0, 1.0])
    assert facade.model_for("b", slow.task_id, now=12.0) is model0  # still held: kept
    _answer(facade, slow, "b", 0.0, 13.0)  # version 0 is no longer trained from
    version0 = weakref.ref(model0.params["w"])
    del model0
    third = _task(facade, "b", 14.0)  # a new download prunes what the engine let go
    assert facade.model_for("b", third.task_id, now=14.0).params["w"].shape == (2,)
    gc.collect()
    assert version0() is None
