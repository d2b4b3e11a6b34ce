"""DP refusals and the distributed-DP encoding, found unpinned by a fresh mutation sample
(benchmarks/mutation.py): FedProx's anchor must cover every parameter; a client's words carry the
noise offset +T (so they stay in [0, levels]) and its update clipped to C; `for_round` refuses
settings whose noise truncation is not negligible against delta, and caps the noise std."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import train_private
from fedcore.dp.secagg_noise import MAX_NOISE_STD, NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig


def test_a_global_state_without_every_parameter_is_refused_before_any_step() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(TensorDataset(torch.randn(20, 3), torch.randint(0, 2, (20,))),
                        batch_size=5)
    accountant = PrivacyAccountant()

    with pytest.raises(ValueError):  # not a KeyError from deep inside
        train_private(model=model, optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=0.1),
                      data_loader=loader, epochs=1, accountant=accountant, delta=1e-5,
                      noise_multiplier=1.0, max_grad_norm=1.0, proximal_mu=0.5,
                      global_state={"weight": before["weight"]})  # no "bias"

    assert accountant.history == ()
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name])
    # refused before Opacus wrapped it: no per-sample-gradient hooks are left on the model
    assert not model._forward_hooks and not model._backward_hooks
    assert not getattr(model, "_full_backward_hooks", None)


SECAGG = SecAggConfig(max_clients=10, threshold=5, clip=1.0, bit_width=32)
DIM = 201  # 200 values and the weight slot


def _decode_one(encoding: NoisyEncoding, words: np.ndarray) -> np.ndarray:
    """One client's words back to floats (its noise share still in)."""
    centred = words.astype(np.float64) - encoding.offset
    return encoding.quantizer.dequantize_sum(centred, 1)


def test_a_clients_words_lie_in_its_range_and_decode_to_its_update() -> None:
    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=0.5, clip_norm=1.0),
                                       SECAGG, DIM)
    update = np.linspace(-0.05, 0.05, DIM - 1)  # norm ~0.41 < C: not clipped
    rng = np.random.default_rng(5)

    words = encoding.encode(update, rng)

    assert int(words.max()) <= SECAGG.levels  # offset T added, not subtracted: no wrap
    decoded = _decode_one(encoding, words)
    # the noise std over t survivors is z * Δ₂; one client's share is that / sqrt(t)
    share_std = encoding.noise.total_variance ** 0.5 / math.sqrt(SECAGG.threshold)
    std_floats = share_std / encoding.scale
    error = decoded[:-1] - update
    assert abs(float(error.mean())) < 5 * std_floats / math.sqrt(DIM - 1)
    assert float(error.std()) == pytest.approx(std_floats, rel=0.25)
    assert decoded[-1] == pytest.approx(SECAGG.clip, abs=6 * std_floats)  # the weight slot


def test_an_update_above_the_clip_norm_is_clipped_to_it() -> None:
    config = DistributedDPConfig(noise_multiplier=0.5, clip_norm=0.1)
    encoding = NoisyEncoding.for_round(config, SECAGG, DIM)
    update = np.full(DIM - 1, 0.05)  # norm ~0.71, seven times C; each value inside [-c, c]
    rng = np.random.default_rng(6)

    decoded = np.mean([_decode_one(encoding, encoding.encode(update, rng))[:-1]
                       for _ in range(20)], axis=0)

    clipped = update * (config.clip_norm / np.linalg.norm(update))
    share_std = encoding.noise.total_variance ** 0.5 / math.sqrt(SECAGG.threshold)
    tolerance = 5 * share_std / encoding.scale / math.sqrt(20 * (DIM - 1))
    assert abs(float(decoded.mean()) - float(clipped.mean())) < tolerance


def _truncation(encoding: NoisyEncoding) -> float:
    """The documented bound on one client's truncated noise: d * 2exp(-T²/(2(σ² + T/3)))."""
    t, sigma2 = encoding.offset, encoding.noise.total_variance
    return encoding.dim * 2 * math.exp(-t**2 / (2 * (sigma2 + t / 3)))


def test_truncation_is_refused_exactly_where_the_documented_bound_exceeds_1e_6_delta() -> None:
    # few levels (19 bits over 1000 clients), so z * Δ₂ near 1-3 and the bound near 1e-11
    secagg = SecAggConfig(max_clients=1000, threshold=5, clip=1.0, bit_width=19)
    delta = 1e-5
    accepted, refused = [], []
    for z in np.geomspace(1e-3, 2e-2, 25):
        config = DistributedDPConfig(noise_multiplier=float(z), clip_norm=1.0, delta=delta)
        try:
            encoding = NoisyEncoding.for_round(config, secagg, 10)
        except ValueError:
            refused.append(z)
            continue
        accepted.append(z)
        assert _truncation(encoding) * secagg.max_clients <= 1e-6 * delta
    assert accepted and refused
    assert max(refused) < min(accepted)  # more noise, wider tails: less truncation


def test_the_noise_std_is_capped_at_max_noise_std_where_the_bits_would_allow_more() -> None:
    secagg = SecAggConfig(max_clients=2, threshold=1, clip=1.0, bit_width=48)
    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=1.0, clip_norm=1.0),
                                       secagg, 5)

    sigma = encoding.noise.total_variance ** 0.5  # at t = 1
    assert sigma <= MAX_NOISE_STD
    assert sigma > 0.99 * MAX_NOISE_STD  # the cap binds: the bits alone would allow far more
    assert encoding.quantizer.levels + 2 * encoding.offset <= secagg.levels


def test_the_truncation_refusal_sits_exactly_at_the_documented_bound() -> None:
    """A delta 1% above the bound's need is accepted, 1% below refused (d, 2, T²/(2(σ²+T/3))
    and 1e-6 all matter)."""
    secagg = SecAggConfig(max_clients=1000, threshold=5, clip=1.0, bit_width=19)
    z = 0.0065
    encoding = NoisyEncoding.for_round(DistributedDPConfig(noise_multiplier=z, clip_norm=1.0),
                                       secagg, 10)
    needed = _truncation(encoding) * secagg.max_clients / 1e-6  # the least delta that absorbs it
    assert 1e-9 < needed < 1e-3  # the bound bites here, yet a legal delta covers it

    accepted = NoisyEncoding.for_round(
        DistributedDPConfig(noise_multiplier=z, clip_norm=1.0, delta=needed * 1.01), secagg, 10)
    assert accepted.offset == encoding.offset  # delta changes the check only, not the encoding
    with pytest.raises(ValueError):
        NoisyEncoding.for_round(
            DistributedDPConfig(noise_multiplier=z, clip_norm=1.0, delta=needed * 0.99), secagg, 10)


def test_the_noise_for_a_target_is_found_for_a_single_step_and_a_small_epsilon() -> None:
    from fedcore.dp.opacus import HistoryEntry, Mechanism, epsilon, noise_multiplier_for_target

    for target, steps in ((0.5, 1), (0.5, 50)):
        sigma = noise_multiplier_for_target(target_epsilon=target, delta=1e-5, sample_rate=0.1,
                                            steps=steps)
        spent = epsilon([HistoryEntry(noise_multiplier=sigma, sample_rate=0.1, steps=steps)],
                        delta=1e-5, mechanism=Mechanism.RDP)
        assert 0 < sigma < 100 and target - 0.02 <= spent <= target  # Opacus' tolerance 0.01
    for target, steps in ((0.0, 10), (-1.0, 10), (1.0, 0)):
        with pytest.raises(ValueError):
            noise_multiplier_for_target(target_epsilon=target, delta=1e-5, sample_rate=0.1,
                                        steps=steps)
