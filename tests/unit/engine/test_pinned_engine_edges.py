"""The engine's settings and stored state at their edges: each EngineConfig check at the last
refused and first accepted value, the secure-aggregation settings, snapshots, checkpoints
(magic, header size, header type, kind, length), the frozen round model and the registry's
liveness window."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.engine import EngineConfig
from fedcore.engine.buffered import BufferedSnapshot, BufferRecord
from fedcore.engine.checkpoint import (
    _LEN,
    MAGIC,
    MAX_HEADER_BYTES,
    CheckpointError,
    buffered_checkpoint_from_bytes,
    buffered_checkpoint_to_bytes,
    checkpoint_from_bytes,
    checkpoint_to_bytes,
)
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.model import RoundModel
from fedcore.engine.registry import Registry
from fedcore.engine.snapshot import EngineSnapshot


@pytest.mark.parametrize(("name", "refused", "accepted"), [
    ("num_rounds", 0, 1),
    ("eval_every", 0, 1),
    ("round_timeout_s", 0.0, 1e-9),
    ("eval_timeout_s", 0.0, 1e-9),
    ("client_timeout_s", 0.0, 1e-9),
    ("retry_after_s", 0.0, 1e-9),
    ("retry_after_s", math.nan, 1.0),
    ("max_payload_bytes", 0, 1),
    ("chunk_bytes", 0, 1),
])
def test_engine_config_refuses_the_last_bad_value_and_takes_the_first_good(
        name: str, refused: object, accepted: object) -> None:
    with pytest.raises(ValueError):
        EngineConfig(**{"num_rounds": 1, name: refused})  # type: ignore[arg-type]
    assert getattr(EngineConfig(**{"num_rounds": 1, name: accepted}), name) == accepted  # type: ignore[arg-type]


@pytest.mark.parametrize(("refused", "accepted"), [(0.0, 1e-9), (1.000001, 1.0)])
def test_the_threshold_fraction_is_in_0_to_1(refused: float, accepted: float) -> None:
    with pytest.raises(ValueError):
        SecureAggregationConfig(threshold_fraction=refused)
    assert SecureAggregationConfig(threshold_fraction=accepted).threshold_fraction == accepted


# ------------------------------------------------------------------ snapshots
def test_an_engine_snapshot_refuses_negative_counters_and_no_model() -> None:
    params = {"w": np.zeros(2)}
    for fields in ({"round": -1, "task_seq": 0}, {"round": 0, "task_seq": -1}):
        with pytest.raises(ValueError):
            EngineSnapshot(params=params, **fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        EngineSnapshot(round=0, task_seq=0, params={})
    assert EngineSnapshot(round=0, task_seq=0, params=params).round == 0


def test_checkpoints_round_trip_and_refuse_the_other_kind() -> None:
    rounds = EngineSnapshot(round=0, task_seq=4, params={"w": np.arange(3.0)})
    data = checkpoint_to_bytes(rounds)
    back = checkpoint_from_bytes(data)
    assert back.task_seq == 4
    np.testing.assert_array_equal(back.params["w"], [0.0, 1.0, 2.0])
    buffered = BufferedSnapshot(version=1, params={"w": np.ones(2)}, tasks_issued=3, expired=1,
                                records=(BufferRecord(version=1, at_s=2.0, staleness=(0, 1)),))
    bdata = buffered_checkpoint_to_bytes(buffered)
    bback = buffered_checkpoint_from_bytes(bdata)
    assert (bback.version, bback.tasks_issued, bback.expired) == (1, 3, 1)
    assert bback.records[0].staleness == (0, 1)
    with pytest.raises(CheckpointError):
        checkpoint_from_bytes(bdata)
    with pytest.raises(CheckpointError):
        buffered_checkpoint_from_bytes(data)


def _with_header(header: bytes, body: bytes = b"") -> bytes:
    return MAGIC + _LEN.pack(len(header)) + header + body


def test_a_damaged_checkpoint_is_refused_as_such() -> None:
    good = checkpoint_to_bytes(EngineSnapshot(round=0, task_seq=0, params={"w": np.zeros(2)}))
    for damaged in (b"X" + good[1:], good[:-1], good + b"\0",
                    _with_header(b"[1, 2]"), _with_header(b"{not json")):
        with pytest.raises(CheckpointError):
            checkpoint_from_bytes(damaged)
    too_large = MAGIC + _LEN.pack(MAX_HEADER_BYTES + 1) + b"{}"
    with pytest.raises(CheckpointError):
        checkpoint_from_bytes(too_large)


def test_a_header_of_exactly_the_maximum_size_is_read() -> None:
    good = checkpoint_to_bytes(EngineSnapshot(round=0, task_seq=5, params={"w": np.ones(2)}))
    (n,) = _LEN.unpack_from(good, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    header, body = good[start:start + n], good[start + n:]
    padded = header + b" " * (MAX_HEADER_BYTES - n)  # JSON allows trailing whitespace
    back = checkpoint_from_bytes(_with_header(padded, body))
    assert back.task_seq == 5
    np.testing.assert_array_equal(back.params["w"], [1.0, 1.0])
    with pytest.raises(CheckpointError):
        checkpoint_from_bytes(_with_header(padded + b" ", body))


# ------------------------------------------------------------------ model, registry
def test_a_round_model_is_frozen_contiguous_and_copied_unless_owned() -> None:
    source = np.arange(6.0).reshape(2, 3)
    strided = source.T  # not C-contiguous
    model = RoundModel.of({"w": strided, "s": np.float32(2.0)})
    assert model.params["w"].flags.c_contiguous and not model.params["w"].flags.writeable
    np.testing.assert_array_equal(model.params["w"], strided)
    assert model.params["s"].shape == ()
    copied = RoundModel.of({"w": source})
    source[0, 0] = 99.0
    assert copied.params["w"][0, 0] == 0.0
    owned_source = np.arange(3.0)
    owned = RoundModel.of({"w": owned_source}, owned=True)
    assert np.shares_memory(owned.params["w"], owned_source)
    owned_strided = RoundModel.of({"w": np.arange(6.0).reshape(2, 3).T}, owned=True)
    assert owned_strided.params["w"].flags.c_contiguous


def test_a_client_is_live_until_exactly_the_timeout() -> None:
    registry = Registry(10.0)
    registry.join("a", now=100.0, properties={})  # liveness counts from the last contact
    assert registry.is_live("a", 110.0) and not registry.is_live("a", 110.001)
    assert not registry.is_live("b", 100.0)
    assert registry.available(110.0) == ["a"] and registry.available(110.001) == []
    registry.exclude("a", "budget spent")
    assert registry.available(100.0) == [] and registry.is_live("a", 100.0)
    registry.exclude("nobody", "x")  # unknown: nothing happens


def test_the_payload_limit_on_untrusted_uploads_defaults_to_4_gib() -> None:
    # a client controls the announced payload size: the default bound is part of the
    # coordinator's exposure (docs/protocol.md, `max_payload_bytes`), not a tuning detail
    assert EngineConfig(num_rounds=1).max_payload_bytes == 4 * 2**30
