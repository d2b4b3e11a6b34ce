"""Whole rounds through the in-memory Cohort: exact sums, dropouts, aborts."""

import numpy as np
import pytest

from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode
from fedcore.secagg.errors import ProtocolError, RoundAborted
from fedcore.secagg.messages import (
    AdvertiseKeys,
    ConsistencySignature,
    EncryptedShares,
    MaskedInput,
    UnmaskShares,
)

from .conftest import expected_sum, make_inputs, make_spec, signed_cohort

PHASE_MESSAGES = [AdvertiseKeys, EncryptedShares, MaskedInput, UnmaskShares]


def _run(spec, drops=None):
    inputs = make_inputs(spec)
    cohort = Cohort(spec)
    result = cohort.run(inputs, drops=drops)
    return result, inputs


def _assert_exact(spec, result, inputs):
    assert np.array_equal(result.total.astype(object), expected_sum(spec, inputs, result.survivors))


def test_no_dropout_sums_everyone():
    spec = make_spec()
    result, inputs = _run(spec)

    assert result.survivors == (1, 2, 3, 4, 5, 6)
    _assert_exact(spec, result, inputs)


@pytest.mark.parametrize("message", PHASE_MESSAGES)
def test_one_dropout_before_each_phase(message):
    spec = make_spec()
    result, inputs = _run(spec, {message: {2}})

    _assert_exact(spec, result, inputs)


@pytest.mark.parametrize("message", [AdvertiseKeys, EncryptedShares, MaskedInput])
def test_dropped_client_is_left_out_of_the_sum(message):
    result, _ = _run(make_spec(), {message: {2}})

    assert 2 not in result.survivors


def test_client_dropping_during_unmask_is_still_summed():
    result, _ = _run(make_spec(), {UnmaskShares: {2}})

    assert 2 in result.survivors


def test_dropouts_in_every_phase_at_once():
    spec = make_spec(n=10, threshold=4)
    drops = {AdvertiseKeys: {1}, EncryptedShares: {2}, MaskedInput: {3, 4}, UnmaskShares: {5, 6}}
    result, inputs = _run(spec, drops)

    assert result.survivors == (5, 6, 7, 8, 9, 10)
    _assert_exact(spec, result, inputs)


def test_maximum_tolerated_dropouts():
    spec = make_spec(n=8, threshold=3)
    result, inputs = _run(spec, {MaskedInput: {1, 2, 3}, UnmaskShares: {4, 5}})

    assert len(result.survivors) == 5
    _assert_exact(spec, result, inputs)


@pytest.mark.parametrize("message", PHASE_MESSAGES)
def test_abort_below_threshold_in_each_phase(message):
    spec = make_spec(n=6, threshold=4)

    with pytest.raises(RoundAborted):
        _run(spec, {message: {1, 2, 3}})


def test_abort_leaves_no_partial_result():
    spec = make_spec(n=6, threshold=4)
    cohort = Cohort(spec)

    with pytest.raises(RoundAborted):
        cohort.run(make_inputs(spec), drops={MaskedInput: {1, 2, 3}})

    assert "masked input" in (cohort.server.abort_reason or "")


@pytest.mark.parametrize("bit_width", [4, 8, 13, 16, 24, 32, 33, 48, 64])
def test_exact_across_bit_widths(bit_width):
    spec = make_spec(n=5, threshold=3, bit_width=bit_width)
    result, inputs = _run(spec, {MaskedInput: {5}})

    _assert_exact(spec, result, inputs)


def test_secagg_plus_exact_with_dropouts():
    spec = make_spec(n=30, threshold=4, mode=Mode.SECAGG_PLUS, degree=6)
    drops = {EncryptedShares: {3}, MaskedInput: {7, 19}, UnmaskShares: {11}}
    result, inputs = _run(spec, drops)

    _assert_exact(spec, result, inputs)


def test_secagg_plus_sends_far_less_than_full():
    full = Cohort(make_spec(n=40, threshold=10, dim=1))
    sparse = Cohort(make_spec(n=40, threshold=4, dim=1, mode=Mode.SECAGG_PLUS, degree=6))
    for cohort in (full, sparse):
        cohort.run(make_inputs(cohort.spec))

    assert sparse.bytes_up[1] * 3 < full.bytes_up[1]


def test_signed_round_exact():
    cohort = signed_cohort(n=7, threshold=5)
    inputs = make_inputs(cohort.spec)
    result = cohort.run(inputs, drops={MaskedInput: {7}, ConsistencySignature: {6}})

    _assert_exact(cohort.spec, result, inputs)


def test_masked_input_travels_at_bit_width():
    spec = make_spec(n=4, threshold=3, dim=1000, bit_width=20)
    cohort = Cohort(spec, record=True)
    cohort.run(make_inputs(spec))

    sizes = {len(m.data) for m in cohort.server_view if isinstance(m, MaskedInput)}
    assert sizes == {2500}


def test_degree_larger_than_cohort_behaves_as_full():
    spec = make_spec(n=5, threshold=3, mode=Mode.SECAGG_PLUS, degree=8)
    result, inputs = _run(spec, {MaskedInput: {1}})

    _assert_exact(spec, result, inputs)


def test_a_client_that_refuses_leaves_the_in_memory_round_like_a_dropout():
    spec = make_spec(n=6, threshold=4)
    cohort = Cohort(spec)
    refusing = cohort.clients[3]

    def refuse(msg):
        raise ProtocolError(phase=refusing.phase.name, got=type(msg).__name__, reason="no")

    refusing.handle = refuse  # type: ignore[method-assign]
    inputs = make_inputs(spec)

    result = cohort.run(inputs)

    assert set(cohort.refusals) == {3}
    assert 3 not in result.survivors
    _assert_exact(spec, result, inputs)
