"""Local DP-SGD through the Opacus boundary: names, ε, clipping, FedProx, calibration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from opacus.accountants import RDPAccountant
from torch import nn

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import (
    HistoryEntry,
    Mechanism,
    epsilon,
    noise_multiplier_for_target,
    plan_local_task,
    strip_wrapper_names,
    train_private,
)
from fedcore.storage.accountant_file import open_accountant

DELTA = 1e-5


def _opacus_epsilon(noise_multiplier: float, sample_rate: float, steps: int) -> float:
    reference = RDPAccountant()
    for _ in range(steps):
        reference.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)
    return reference.get_epsilon(delta=DELTA)


def _train(model, loader, sgd, accountant, **overrides):  # type: ignore[no-untyped-def]
    args = dict(
        model=model, optimizer_factory=sgd(0.1), data_loader=loader, noise_multiplier=1.1,
        max_grad_norm=1.0, epochs=1, accountant=accountant, delta=DELTA,
    )
    args.update(overrides)
    return train_private(**args)


def test_exchanged_state_has_plain_names_and_loads_into_fresh_model(make_model, make_loader, sgd):
    model = make_model(0)
    plain = list(model.state_dict())

    result = _train(model, make_loader(), sgd, PrivacyAccountant())

    assert list(result.state) == plain
    assert not any("_module" in name for name in result.state)
    fresh = make_model(1)
    fresh.load_state_dict(result.state)  # strict by default
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, result.state[name])


def test_strip_wrapper_names_removes_only_the_prefix():
    state = {"_module.0.weight": torch.ones(1), "_module.inner._module.b": torch.zeros(1)}

    assert list(strip_wrapper_names(state)) == ["0.weight", "inner._module.b"]


def test_epsilon_equals_opacus_across_rounds(tmp_path: Path, make_model, make_loader, sgd):
    model, loader = make_model(), make_loader()
    accountant = open_accountant(tmp_path)
    sample_rate = 1 / len(loader)

    for round_index in range(1, 4):
        result = _train(model, loader, sgd, accountant)  # same model object each round
        expected = _opacus_epsilon(1.1, sample_rate, round_index * len(loader))
        assert result.epsilon == pytest.approx(expected, rel=1e-12)
        assert result.steps == len(loader)
    assert accountant.steps == 3 * len(loader)


def test_epsilon_continues_after_restart(tmp_path: Path, make_model, make_loader, sgd):
    loader = make_loader()
    first = open_accountant(tmp_path)
    _train(make_model(), loader, sgd, first)
    _train(make_model(), loader, sgd, first)

    restarted = open_accountant(tmp_path)  # a new process would do exactly this
    result = _train(make_model(), loader, sgd, restarted)

    expected = _opacus_epsilon(1.1, 1 / len(loader), 3 * len(loader))
    assert restarted.steps == 3 * len(loader)
    assert result.epsilon == pytest.approx(expected, rel=1e-12)


def test_plan_local_task_predicts_the_recorded_entry(make_model, make_loader, sgd):
    loader = make_loader(n=97, batch_size=7)
    accountant = PrivacyAccountant()

    _train(make_model(), loader, sgd, accountant, epochs=2, noise_multiplier=0.9)

    plan = plan_local_task(loader, epochs=2, noise_multiplier=0.9)
    assert accountant.history == (plan,)


def test_every_per_sample_gradient_is_clipped(make_model, make_loader):
    # Inputs scaled up so raw per-sample gradients are mostly above the bound.
    seen: list[tuple[float, float, int, float]] = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):  # type: ignore[no-untyped-def, override]
            params = [p for group in self.param_groups for p in group["params"]]
            per_sample = torch.cat([p.grad_sample.flatten(1) for p in params], dim=1)
            clipped = per_sample * (0.5 / (per_sample.norm(dim=1, keepdim=True) + 1e-6)).clamp(
                max=1.0
            )
            summed = torch.cat([p.summed_grad.flatten() for p in params])
            assert torch.allclose(summed, clipped.sum(dim=0), atol=1e-5)
            seen.append((float(per_sample.norm(dim=1).max()),
                         float(clipped.norm(dim=1).max()), len(per_sample),
                         float(summed.norm())))
            return super().step(closure)

    _train(make_model(), make_loader(scale=10.0), lambda lr: (lambda p: Recording(p, lr=lr)),
           PrivacyAccountant(), max_grad_norm=0.5, noise_multiplier=0.0)

    assert seen
    assert max(raw for raw, _, _, _ in seen) > 5.0
    for _, largest_clipped, batch, summed_norm in seen:
        assert largest_clipped <= 0.5 * (1 + 1e-6)
        assert summed_norm <= batch * 0.5 * (1 + 1e-5)


def test_zero_noise_update_is_bounded_by_the_clip(make_model, make_loader, sgd):
    model = make_model()
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    loader = make_loader(n=100, batch_size=100, scale=100.0)  # one step, whole dataset

    result = _train(model, loader, sgd, PrivacyAccountant(), noise_multiplier=0.0,
                    max_grad_norm=0.5)

    after = torch.cat([result.state[name].flatten() for name, _ in model.named_parameters()])
    # step = lr * (sum of <= B clipped grads) / expected batch (100); B <= 100 examples
    assert float((after - before).norm()) <= 0.1 * 0.5 * (1 + 1e-5)


def test_proximal_term_keeps_weights_closer_to_global(make_model, make_loader, sgd):
    global_state = {k: v.clone() for k, v in make_model().state_dict().items()}

    def distance(mu: float) -> float:
        result = _train(make_model(), make_loader(), sgd, PrivacyAccountant(), epochs=3,
                        noise_multiplier=0.0, proximal_mu=mu, global_state=global_state)
        return sum(float((result.state[k] - global_state[k]).norm() ** 2) for k in global_state)

    assert distance(5.0) < 0.5 * distance(0.0)


def test_proximal_term_without_global_state_is_refused(make_model, make_loader, sgd):
    with pytest.raises(ValueError, match="global_state"):
        _train(make_model(), make_loader(), sgd, PrivacyAccountant(), proximal_mu=0.1)


def test_noise_generator_makes_training_reproducible(make_model, make_loader, sgd):
    def run() -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(3)
        return _train(make_model(), make_loader(), sgd, PrivacyAccountant(),
                      noise_generator=gen).state

    first, second = run(), run()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_loss_and_num_examples_are_reported(make_model, make_loader, sgd):
    result = _train(make_model(), make_loader(n=90), sgd, PrivacyAccountant())

    assert result.num_examples == 90
    assert 0 < result.loss < 10


def test_noise_multiplier_for_target_reaches_the_target():
    sigma = noise_multiplier_for_target(target_epsilon=3.0, delta=DELTA, sample_rate=0.05,
                                        steps=400)

    eps = epsilon([HistoryEntry(noise_multiplier=sigma, sample_rate=0.05, steps=400)],
                  delta=DELTA, mechanism=Mechanism.RDP)
    assert 2.95 <= eps <= 3.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda_and_returns_cpu_state(make_model, make_loader, sgd):
    gen = torch.Generator(device="cuda").manual_seed(0)

    result = _train(make_model(), make_loader(), sgd, PrivacyAccountant(), device="cuda",
                    noise_generator=gen)

    assert all(v.device.type == "cpu" for v in result.state.values())
    make_model(1).load_state_dict(result.state)


def test_model_opacus_cannot_handle_gets_a_clear_error(make_loader, sgd):
    model = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))

    with pytest.raises(ValueError, match="(?i)batchnorm"):
        _train(model, make_loader(), sgd, PrivacyAccountant())


def test_summing_criterion_is_refused(make_model, make_loader, sgd):
    with pytest.raises(ValueError, match="reduction='mean'"):
        _train(make_model(), make_loader(), sgd, PrivacyAccountant(),
               criterion=nn.CrossEntropyLoss(reduction="sum"))
