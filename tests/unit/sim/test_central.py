from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedcore.sim.central import CentralEvaluator
from fedcore.sim.runners import split_local


def test_central_evaluation_matches_a_direct_computation_across_batches() -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    params = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(25, 4)).astype(np.float32), rng.integers(0, 3, 25)

    metrics = CentralEvaluator(model, (x, y), batch_size=7)(params)

    logits = model(torch.from_numpy(x))
    expected = nn.functional.cross_entropy(logits, torch.from_numpy(y))
    assert metrics.loss == pytest.approx(float(expected), rel=1e-6)
    assert metrics.accuracy == float((logits.argmax(1).numpy() == y).mean())


def test_a_zero_test_fraction_trains_on_all_local_data() -> None:
    x, y = np.arange(10.0).reshape(5, 2), np.arange(5)

    split = split_local((x, y), test_fraction=0.0, seed=1)

    assert split.train[0] is x and len(split.test[1]) == 0
    assert len(split_local((x, y), test_fraction=0.2, seed=1).test[1]) == 1
