"""TorchApp behaviours the mutation run (benchmarks/mutation.py) found unpinned: the local step
count SCAFFOLD divides by, and DP-SGD that is reproducible from torch's seed unless the app
asks for OS entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client.app import ClientAppError
from fedcore.client.torch_app import TorchApp, resolve_device
from fedcore.protocol.messages import LocalDPConfig, TrainConfig


def _app(**options: object) -> TorchApp:
    torch.manual_seed(0)
    x, y = torch.randn(30, 4), torch.randint(0, 2, (30,))
    loader = DataLoader(TensorDataset(x, y), batch_size=8)  # 4 batches, the last of 6
    return TorchApp(nn.Linear(4, 2), train_loader=loader, **options)  # type: ignore[arg-type]


def test_fit_reports_one_local_step_per_batch_and_epoch() -> None:
    app = _app()

    result = app.fit(app.get_parameters(), TrainConfig(local_epochs=3, learning_rate=0.1))

    assert result.local_steps == 3 * 4
    assert result.num_examples == 30


def test_private_training_is_reproducible_from_torchs_seed_by_default() -> None:
    config = TrainConfig(local_epochs=1, learning_rate=0.1, local_dp=LocalDPConfig(
        noise_multiplier=1.0, max_grad_norm=1.0))
    runs = []
    for _ in range(2):
        app = _app()
        assert not app.secure_rng
        start = app.get_parameters()
        torch.manual_seed(7)
        runs.append(app.fit(start, config).params)

    for name, value in runs[0].items():
        np.testing.assert_array_equal(value, runs[1][name])
    assert any(not np.array_equal(v, start[k]) for k, v in runs[0].items())


def test_no_local_dp_has_no_plan() -> None:
    assert _app().plan_local_dp(TrainConfig()) is None


def test_parameters_with_other_names_are_refused_and_the_model_is_untouched() -> None:
    app = _app()
    before = app.get_parameters()
    renamed = {f"x.{k}": v + 1 for k, v in before.items()}

    with pytest.raises(ClientAppError, match="names do not match"):
        app.fit(renamed, TrainConfig())

    for name, value in app.get_parameters().items():
        np.testing.assert_array_equal(value, before[name])


def test_auto_device_resolves_to_a_real_device() -> None:
    device = resolve_device("auto")

    assert isinstance(device, torch.device)
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
