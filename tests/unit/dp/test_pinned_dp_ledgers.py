"""DP details found unpinned by the seed-6 sample: the simulator's fast path (an RDP curve over
`rdp_orders()`, summed) gives the ε the client's accountant reports; a distributed-DP ledger
that is not a list is refused (an empty object is not an empty ledger); and the sensitivity of
the distributed-DP encoding is s·C + sqrt(d) with s = L/(2c) at any clip c, as documented."""

from __future__ import annotations

import math

import pytest

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.distributed_accountant import steps_from_json
from fedcore.dp.opacus import HistoryEntry, epsilon_from_rdp, rdp_curve, rdp_orders
from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import SecAggConfig


def test_the_rdp_curve_over_rdp_orders_gives_the_accountants_epsilon() -> None:
    entries = [HistoryEntry(noise_multiplier=1.1, sample_rate=0.01, steps=300),
               HistoryEntry(noise_multiplier=0.8, sample_rate=0.02, steps=100)]
    orders = rdp_orders()
    assert len(orders) > 10 and all(isinstance(a, float) and a > 1 for a in orders)
    curve = sum(rdp_curve(e, orders) for e in entries)
    accountant = PrivacyAccountant(history=entries)
    assert epsilon_from_rdp(orders, curve, delta=1e-5) == pytest.approx(
        accountant.epsilon(1e-5), rel=1e-9)


@pytest.mark.parametrize("items", [{}, "", {"kind": "skellam"}, None])
def test_a_ledger_that_is_not_a_list_is_refused(items: object) -> None:
    with pytest.raises(ValueError):
        steps_from_json(items)
    assert steps_from_json([]) == ()


@pytest.mark.parametrize("clip", [0.5, 2.0])
def test_the_encodings_sensitivity_is_s_times_c_plus_sqrt_d(clip: float) -> None:
    secagg = SecAggConfig(max_clients=10, threshold=4, clip=clip, bit_width=32)
    config = DistributedDPConfig(noise_multiplier=0.5, clip_norm=0.3)
    encoding = NoisyEncoding.for_round(config, secagg, 101)
    assert encoding.scale == encoding.quantizer.levels / (2 * clip)
    assert encoding.noise.l2_sensitivity == pytest.approx(
        encoding.scale * config.clip_norm + math.sqrt(101))
