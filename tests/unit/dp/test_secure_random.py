"""Secure randomness: the numpy CSPRNG for rounding and integer noise, and secure DP-SGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from randomgen import AESCounter
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.client.secure import SecureSession
from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import OsEntropy, plan_local_task, refill_generator, train_private
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.dp.secure_random import client_generator, is_secure, secure_generator
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.protocol.messages import SecAggSetup
from fedcore.secagg.config import RoundSpec, SecAggConfig
from fedcore.secagg.quantize import Quantizer

DELTA = 1e-5


def test_secure_generators_are_aes_ctr_and_independent() -> None:
    a, b = secure_generator(), secure_generator()

    assert is_secure(a) and is_secure(client_generator(secure=True))
    assert not is_secure(client_generator(secure=False))
    assert not np.array_equal(a.integers(0, 2**63, 8), b.integers(0, 2**63, 8))


def test_stochastic_rounding_with_the_csprng_is_unbiased() -> None:
    quantizer = Quantizer(clip=1.0, levels=10, bit_width=16)
    x = np.full(200_000, 0.13)  # 5.65 levels: rounds to 5 or 6

    words = quantizer.quantize(x, secure_generator()).astype(np.float64)

    assert set(np.unique(words)) == {5.0, 6.0}
    assert words.mean() == pytest.approx(5.65, abs=0.01)  # ~6 standard errors


def test_skellam_noise_from_the_csprng_has_the_planned_variance() -> None:
    spec = SecAggConfig(threshold=1, max_clients=2, clip=1.0, bit_width=40)
    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=0.5, clip_norm=1.0),
                                       spec, dim=50_000)

    noise = encoding.sample_noise(secure_generator())

    assert np.abs(noise).max() <= encoding.offset
    assert noise.var() == pytest.approx(encoding.noise.client_variance, rel=0.03)


def test_the_secure_session_draws_from_the_generator_it_is_given() -> None:
    spec = RoundSpec(config=SecAggConfig(threshold=2, max_clients=10, clip=1.0), round_id=1,
                     num_clients=3, dim=4)
    setup = SecAggSetup(client=1, spec=spec, weight_cap=10.0)
    rng, twin = (np.random.Generator(AESCounter(key=1234)) for _ in range(2))

    SecureSession(setup, {"w": np.full(3, 0.3)}, 5, rng=rng)

    assert rng.random() != twin.random()  # the session consumed `rng` (and twin did not)


# ----------------------------------------------------------------- torch generators


def test_a_refilled_generator_forgets_its_seed_and_stays_uniform() -> None:
    a, b = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)

    refill_generator(a)
    refill_generator(b)

    x, y = torch.rand(100_000, generator=a, dtype=torch.float64), torch.rand(3, generator=b)
    assert not torch.equal(x[:3].float(), y)
    assert float(x.mean()) == pytest.approx(0.5, abs=0.005)
    assert float(x.std()) == pytest.approx(12**-0.5, rel=0.01)


def test_a_refill_discards_a_cached_normal() -> None:
    gen = torch.Generator().manual_seed(0)
    torch.randn(1, generator=gen)  # a scalar normal may leave its Box-Muller twin cached

    outputs = set()
    for _ in range(3):
        refill_generator(gen)
        outputs.add(float(torch.randn(1, generator=gen)))

    assert len(outputs) == 3


# ----------------------------------------------------------------- secure DP-SGD


def _loader(n: int = 120, seed: int = 0) -> DataLoader[tuple[torch.Tensor, ...]]:
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 8, generator=gen), torch.randint(0, 3, (n,), generator=gen)
    return DataLoader(TensorDataset(x, y), batch_size=20,
                      generator=torch.Generator().manual_seed(seed))


def _run(*, secure: bool, noise: float = 1.0, model: nn.Module | None = None,
         loader: DataLoader[tuple[torch.Tensor, ...]] | None = None,
         accountant: PrivacyAccountant | None = None, max_grad_norm: float = 1.0,
         lr: float = 0.1) -> torch.Tensor:
    torch.manual_seed(0)  # the same seeds for every run: only secure mode may differ
    model = model or nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    result = train_private(
        model=model, optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=lr),
        data_loader=loader or _loader(), noise_multiplier=noise, max_grad_norm=max_grad_norm,
        epochs=1, accountant=accountant or PrivacyAccountant(), delta=DELTA, secure_mode=secure,
    )
    return torch.cat([v.flatten() for v in result.state.values()])


def test_default_dp_sgd_repeats_under_the_same_seeds_and_secure_mode_does_not() -> None:
    assert torch.equal(_run(secure=False), _run(secure=False))  # the check can bite

    assert not torch.equal(_run(secure=True), _run(secure=True))


def test_secure_mode_samples_batches_from_fresh_entropy() -> None:
    # Without noise, two runs can only differ by which examples their batches hold.
    assert torch.equal(_run(secure=False, noise=0.0), _run(secure=False, noise=0.0))

    assert not torch.equal(_run(secure=True, noise=0.0), _run(secure=True, noise=0.0))


def test_secure_mode_noise_has_the_configured_scale() -> None:
    # Noise 1000x the clip bound: one step moves each weight by lr * 1000 / expected batch,
    # up to the clipped gradients (total norm <= 1, negligible).
    model = nn.Linear(64, 64)
    start = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    gen = torch.Generator().manual_seed(1)
    loader = DataLoader(TensorDataset(torch.randn(40, 64, generator=gen),
                                      torch.randint(0, 64, (40,), generator=gen)),
                        batch_size=40)  # one step, expected batch 40
    after = _run(secure=True, noise=1000.0, model=model, loader=loader, lr=1.0)

    moved = (after - start) / (1000.0 / 40)
    assert float(moved.std()) == pytest.approx(1.0, rel=0.05)  # 4160 draws: ~1% error
    assert abs(float(moved.mean())) < 0.05


def test_secure_mode_records_what_the_plan_says() -> None:
    accountant, loader = PrivacyAccountant(), _loader()

    _run(secure=True, accountant=accountant, loader=loader)

    assert accountant.history == (plan_local_task(loader, epochs=1, noise_multiplier=1.0),)


def test_secure_mode_refuses_a_caller_chosen_noise_generator() -> None:
    with pytest.raises(ValueError, match="drop noise_generator"):
        train_private(model=nn.Linear(8, 3), optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=0.1),
                      data_loader=_loader(), noise_multiplier=1.0, max_grad_norm=1.0, epochs=1,
                      accountant=PrivacyAccountant(), delta=DELTA, secure_mode=True,
                      noise_generator=torch.Generator().manual_seed(0))


def test_os_entropy_shares_one_generator_on_cpu() -> None:
    entropy = OsEntropy("cpu")

    assert entropy.noise is entropy.sampling
