"""`gaussian_approx_epsilon` is Opacus' subsampled-Gaussian ε for (z, q, rounds), nothing else.

The approximation prices t survivors' summed integer noise as a Gaussian of std z·Δ₂, so only
the noise multiplier, the client sampling rate and the rounds enter: ε equals what Opacus'
accountant of the chosen mechanism (RDP by default, PRV when asked) reports for the history
[(z, q, rounds)], whatever Δ₂ and t are.
"""

from __future__ import annotations

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from fedcore.dp.distributed import DistributedNoise, gaussian_approx_epsilon
from fedcore.dp.opacus import Mechanism


def _opacus(accountant: RDPAccountant | PRVAccountant, z: float, q: float, rounds: int) -> float:
    accountant.history = [(z, q, rounds)]
    return float(accountant.get_epsilon(delta=1e-5))


@pytest.mark.parametrize(("z", "q", "rounds"), [(1.1, 0.01, 200), (2.0, 1.0, 3)])
def test_the_default_is_opacus_rdp_for_z_q_and_rounds(z: float, q: float, rounds: int) -> None:
    small = DistributedNoise(noise_multiplier=z, l2_sensitivity=3.0, min_survivors=2)
    large = DistributedNoise(noise_multiplier=z, l2_sensitivity=9000.0, min_survivors=50)

    expected = _opacus(RDPAccountant(), z, q, rounds)

    assert gaussian_approx_epsilon(small, sample_rate=q, rounds=rounds, delta=1e-5) == expected
    assert gaussian_approx_epsilon(large, sample_rate=q, rounds=rounds, delta=1e-5) == expected


def test_prv_is_used_when_asked() -> None:
    noise = DistributedNoise(noise_multiplier=1.1, l2_sensitivity=3.0, min_survivors=2)

    prv = gaussian_approx_epsilon(noise, sample_rate=0.01, rounds=200, delta=1e-5,
                                  mechanism=Mechanism.PRV)

    assert prv == pytest.approx(_opacus(PRVAccountant(), 1.1, 0.01, 200), rel=1e-6)
    assert prv != pytest.approx(_opacus(RDPAccountant(), 1.1, 0.01, 200), rel=1e-3)
