"""Stripping masks: the same sum inline and through executors, split any way."""

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

from fedcore.secagg import keys, prg, recovery
from fedcore.secagg.cohort import Cohort
from fedcore.secagg.config import Mode
from fedcore.secagg.errors import SecAggError
from fedcore.secagg.messages import MaskedInput
from fedcore.secagg.server import SecAggServer

from .conftest import expected_sum, make_inputs, make_spec

DIM = 257


def _key(i: int) -> bytes:
    return bytes([i]) * 32


def _work(dim: int = DIM, *, dropped: int = 3, survivors: int = 5) -> recovery.MaskWork:
    publics = [keys.public_bytes(keys.new_x25519(lambda n, i=i: _key(i))) for i in range(50)]
    pairs = tuple(
        recovery.DroppedPairs(
            dropped=d,
            private_key=_key(100 + d),
            survivors=tuple((s, publics[s]) for s in range(1, survivors + 1) if s != d),
        )
        for d in range(2, 2 + dropped)
    )
    seeds = tuple(_key(200 + s) for s in range(1, survivors + 1))
    return recovery.MaskWork(round_id=5, dim=dim, dtype="<u4", self_seeds=seeds, pairs=pairs)


def _stripped(work: recovery.MaskWork, **kwargs) -> np.ndarray:
    acc = np.arange(work.dim, dtype=np.uint32)
    recovery.strip_all(acc, work, **kwargs)
    return acc


def test_strip_masks_follows_the_sign_rule():
    work = _work(dropped=1, survivors=3)  # dropped client 2, survivors 1 and 3
    acc = np.zeros(DIM, dtype=np.uint32)
    recovery.strip_masks(acc, work)

    expected = np.zeros(DIM, dtype=np.uint32)
    for seed in work.self_seeds:
        expected -= prg.expand(seed, DIM)
    private = keys.new_x25519(lambda n: _key(102))
    for survivor, public in work.pairs[0].survivors:
        seed = keys.derive_mask_seed(keys.agree(private, public), round_id=5, a=survivor, b=2)
        expected += prg.expand(seed, DIM) * np.uint32(1 if survivor > 2 else -1 % 2**32)
    assert np.array_equal(acc, expected)


@pytest.mark.parametrize("parts", [1, 2, 3, 7, 1000])
def test_pieces_cover_every_mask_exactly_once(parts):
    work = _work()
    pieces = work.split(parts)

    assert len(pieces) == min(parts, len(work.self_seeds))
    assert sorted(s for p in pieces for s in p.self_seeds) == sorted(work.self_seeds)
    got = sorted((g.dropped, s) for p in pieces for g in p.pairs for s, _ in g.survivors)
    assert got == sorted((g.dropped, s) for g in work.pairs for s, _ in g.survivors)
    assert all(g.survivors for p in pieces for g in p.pairs)


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_thread_executor_gives_the_inline_result(parts):
    work = _work()
    with ThreadPoolExecutor(2) as executor:
        threaded = _stripped(work, executor=executor, parts=parts)

    assert np.array_equal(threaded, _stripped(work))


def test_process_executor_gives_the_inline_result():
    work = _work()
    with ProcessPoolExecutor(2) as executor:
        pooled = _stripped(work, executor=executor, parts=3)

    assert np.array_equal(pooled, _stripped(work))


def test_uint64_words_through_an_executor():
    work = _work()
    work64 = recovery.MaskWork(
        round_id=work.round_id,
        dim=DIM,
        dtype="<u8",
        self_seeds=work.self_seeds,
        pairs=work.pairs,
    )
    inline = np.zeros(DIM, np.uint64)
    recovery.strip_all(inline, work64)
    pooled = np.zeros(DIM, np.uint64)
    with ThreadPoolExecutor(2) as executor:
        recovery.strip_all(pooled, work64, executor=executor, parts=2)

    assert np.array_equal(pooled, inline)


def test_bad_survivor_key_raises_through_a_process_pool():
    work = _work()
    bad = recovery.DroppedPairs(dropped=9, private_key=_key(9), survivors=((1, bytes(32)),))
    broken = recovery.MaskWork(round_id=5, dim=DIM, dtype="<u4", pairs=work.pairs + (bad,))
    with ProcessPoolExecutor(2) as executor, pytest.raises(SecAggError, match="bad peer"):
        _stripped(broken, executor=executor, parts=2)


@pytest.mark.parametrize("mode", [Mode.FULL, Mode.SECAGG_PLUS])
def test_server_with_an_executor_sums_bit_for_bit_as_inline(mode):
    plus = mode is Mode.SECAGG_PLUS
    spec = make_spec(12, 4 if plus else 7, dim=100, mode=mode, degree=6 if plus else 0)
    inputs = make_inputs(spec)
    drops = {MaskedInput: {2, 5}}
    inline = Cohort(spec).run(inputs, drops=drops)
    with ThreadPoolExecutor(2) as executor:
        threaded = Cohort(spec, executor=executor).run(inputs, drops=drops)

    assert threaded.survivors == inline.survivors
    assert np.array_equal(threaded.total, inline.total)
    assert np.array_equal(
        threaded.total.astype(object), expected_sum(spec, inputs, threaded.survivors)
    )


def test_server_refuses_zero_jobs():
    with pytest.raises(ValueError, match="jobs"):
        SecAggServer(make_spec(), jobs=0)


def test_server_with_a_process_pool_is_exact():
    spec = make_spec(8, 5, dim=64)
    inputs = make_inputs(spec)
    with ProcessPoolExecutor(2) as executor:
        result = Cohort(spec, executor=executor).run(inputs, drops={MaskedInput: {3}})

    assert np.array_equal(result.total.astype(object), expected_sum(spec, inputs, result.survivors))
