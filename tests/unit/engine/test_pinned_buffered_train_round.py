"""A FedBuff training task carries the strategy's settings for the step it builds: version + 1
(the first task asks for round 1's, as a synchronous run's first round does)."""

from __future__ import annotations

import numpy as np

from fedcore.engine.buffered import BufferedConfig, BufferedEngine
from fedcore.protocol.messages import Task, TaskKind

from .test_pinned_engA_secure_steps import _RoundTagged


def test_the_first_tasks_ask_for_round_1s_settings() -> None:
    engine = BufferedEngine(BufferedConfig(buffer_size=2, concurrency=3, num_updates=2),
                            _RoundTagged(), {"w": np.zeros(3, np.float32)})
    tasks = [engine.poll(cid, now=5.0) for cid in ("a", "b", "c")]
    for task in tasks:
        assert isinstance(task, Task) and task.kind is TaskKind.TRAIN
        assert task.train is not None and task.train.local_epochs == 1
