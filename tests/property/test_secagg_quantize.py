"""Hypothesis: quantisation error bounds, packing round trips, weighted sums."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedcore.secagg.config import SecAggConfig
from fedcore.secagg.packing import pack, packed_size, unpack, word_dtype
from fedcore.secagg.quantize import Quantizer, append_weight, split_weight

finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(
    hnp.arrays(np.float64, st.integers(1, 5), elements=finite),
    st.integers(1, 50),
    st.integers(8, 64),
    st.floats(0.01, 5),
    st.integers(0, 2**32),
)
def test_dequantized_sum_is_within_bound_of_clipped_sum(x, clients, bit_width, clip, seed):
    if (2**bit_width - 1) // clients < 1:
        return
    config = SecAggConfig(threshold=1, max_clients=clients, clip=clip, bit_width=bit_width)
    quantizer = Quantizer.from_config(config)
    rng = np.random.default_rng(seed)
    total = sum(quantizer.quantize(x, rng).astype(object) for _ in range(clients))
    decoded = quantizer.dequantize_sum(np.array(total, dtype=np.float64), clients)
    exact = clients * np.clip(x, -clip, clip)

    step = 2 * quantizer.clip / quantizer.levels  # each client's rounding adds at most a step
    assert np.all(np.abs(decoded - exact) <= clients * step * (1 + 1e-9) + 1e-9)


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float64, 1, elements=finite), st.integers(0, 2**32))
def test_quantized_values_stay_in_levels(x, seed):
    config = SecAggConfig(threshold=1, max_clients=7, clip=1.0, bit_width=12)
    q = Quantizer.from_config(config).quantize(x, np.random.default_rng(seed))

    assert 0 <= int(q.min()) and int(q.max()) <= config.levels


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 64), st.integers(0, 300), st.data())
def test_pack_unpack_roundtrip(bit_width, dim, data):
    values = data.draw(
        hnp.arrays(np.uint64, dim, elements=st.integers(0, 2**bit_width - 1))
    ).astype(word_dtype(bit_width))
    packed = pack(values, bit_width)

    assert len(packed) == packed_size(dim, bit_width)
    assert np.array_equal(unpack(packed, bit_width, dim), values)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(hnp.arrays(np.float64, 3, elements=st.floats(-1, 1)), st.floats(0, 1)),
        min_size=1,
        max_size=10,
    )
)
def test_weighted_sums_split_back(updates):
    clip = 1.0
    total = sum(append_weight(w * x, w, clip=clip) for x, w in updates)
    weighted, weight = split_weight(total, clip=clip)

    assert np.allclose(weighted, sum(w * x for x, w in updates))
    assert np.isclose(weight, sum(w for _, w in updates))
