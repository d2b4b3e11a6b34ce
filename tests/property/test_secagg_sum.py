"""Hypothesis: the unmasked sum is exact for any cohort, graph, width and dropout pattern."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode, RoundSpec, SecAggConfig
from fedcore.secagg.errors import RoundAborted
from fedcore.secagg.messages import AdvertiseKeys, EncryptedShares, MaskedInput, UnmaskShares

PHASES = [AdvertiseKeys, EncryptedShares, MaskedInput, UnmaskShares]


@st.composite
def rounds(draw):
    n = draw(st.integers(2, 12))
    mode = draw(st.sampled_from(Mode))
    degree = draw(st.integers(2, 6)) if mode is Mode.SECAGG_PLUS else 0
    holders = min(n, degree + degree % 2 + 1) if mode is Mode.SECAGG_PLUS else n
    threshold = draw(st.integers(1, holders))
    bit_width = draw(st.integers(max(2, n.bit_length() + 1), 64))
    config = SecAggConfig(
        threshold=threshold, max_clients=n, clip=1.0, bit_width=bit_width, mode=mode, degree=degree
    )
    spec = RoundSpec(
        config=config,
        round_id=draw(st.integers(0, 2**63 - 1)),
        num_clients=n,
        dim=draw(st.integers(1, 40)),
        graph_seed=draw(st.binary(min_size=32, max_size=32)),
    )
    when = draw(st.lists(st.sampled_from([None, *PHASES]), min_size=n, max_size=n))
    drops = {phase: {c + 1 for c, w in enumerate(when) if w is phase} for phase in PHASES}
    return spec, drops, draw(st.integers(0, 2**32))


def _inputs(spec, seed):
    rng = np.random.default_rng(seed)
    levels = spec.config.levels
    return {
        c: rng.integers(0, levels, spec.dim, dtype=np.uint64, endpoint=True) for c in spec.clients
    }


def _full_mode_should_abort(spec, drops) -> bool:
    alive, t = set(spec.clients), spec.config.threshold
    for phase in PHASES:
        alive -= drops[phase]
        if len(alive) < t:
            return True
    return False


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rounds())
def test_sum_is_exact_or_the_round_aborts_for_a_stated_reason(case):
    spec, drops, seed = case
    inputs = _inputs(spec, seed)
    cohort = Cohort(spec)
    try:
        result = cohort.run(inputs, drops=drops)
    except RoundAborted as exc:
        assert spec.config.mode is Mode.SECAGG_PLUS or _full_mode_should_abort(spec, drops)
        assert f"t={spec.config.threshold}" in str(exc) or "threshold is" in str(exc)
        return
    assert not (spec.config.mode is Mode.FULL and _full_mode_should_abort(spec, drops))
    modulus = 2**spec.config.bit_width
    expected = [sum(int(inputs[c][i]) for c in result.survivors) % modulus for i in range(spec.dim)]
    assert [int(v) for v in result.total] == expected
    assert (
        set(result.survivors)
        == set(spec.clients) - drops[AdvertiseKeys] - drops[EncryptedShares] - drops[MaskedInput]
        or spec.config.mode is Mode.SECAGG_PLUS
    )
