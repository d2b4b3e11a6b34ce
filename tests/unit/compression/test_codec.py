"""Compressed updates: round trips with bounded error, top-k error feedback through a client's
state directory, and the coordinator's decoding refusing malformed payloads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedcore.client.state import StateDir
from fedcore.compression.codec import (
    Compression,
    Compressor,
    Kind,
    MemoryStore,
    check_layout,
    decode_update,
    is_compressed,
)
from fedcore.protocol.errors import WireError
from fedcore.protocol.specs import spec_of

MODEL = {"w": np.zeros((20, 5), np.float32), "b": np.zeros(5, np.float32),
         "steps": np.zeros((), np.int64)}
SPEC = spec_of(MODEL)


def _update(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"w": rng.normal(size=(20, 5)).astype(np.float32),
            "b": rng.normal(size=5).astype(np.float32), "steps": np.array(3, np.int64)}


@pytest.mark.parametrize(("bits", "ratio"), [(8, 4), (4, 8), (1, 32)])
def test_quantised_round_trip_is_within_one_step_and_smaller(bits: int, ratio: int) -> None:
    update = _update(0)
    payload = Compressor(Compression(kind=Kind.QUANTIZE, bits=bits),
                         rng=np.random.default_rng(1)).compress(update)

    decoded = decode_update(payload, SPEC)

    assert is_compressed(spec_of(payload))
    for name in ("w", "b"):
        step = (update[name].max() - update[name].min()) / ((1 << bits) - 1)
        assert decoded[name].dtype == np.float32 and decoded[name].shape == update[name].shape
        assert np.max(np.abs(decoded[name] - update[name])) <= step * 1.0001
    assert decoded["steps"] == 3  # integers travel dense
    assert payload[f"w#q{bits}"].nbytes == -(-update["w"].nbytes // ratio)  # ceil


def test_top_k_sends_the_largest_entries_and_feeds_back_the_rest() -> None:
    store = MemoryStore()
    compressor = Compressor(Compression(kind=Kind.TOPK, fraction=0.1), store=store)
    u1, u2 = _update(0), _update(1)

    first = decode_update(compressor.compress(u1), SPEC)
    second = decode_update(compressor.compress(u2), SPEC)

    # round 1: exactly the 10 largest |w| entries, exact values
    w = u1["w"].ravel()
    top = np.argsort(-np.abs(w))[:10]
    assert np.count_nonzero(first["w"]) == 10
    np.testing.assert_array_equal(first["w"].ravel()[top], w[top])
    # error feedback: what was sent plus what is kept equals everything ever given
    residual = _residual(store)
    np.testing.assert_allclose(first["w"] + second["w"] + residual["w"].reshape(20, 5),
                               u1["w"] + u2["w"], atol=1e-6)
    # the second round picks from u2 + residual, not from u2 alone
    acc = (u2["w"].ravel().astype(np.float64) + (u1["w"].ravel() - first["w"].ravel()))
    np.testing.assert_array_equal(np.flatnonzero(second["w"].ravel()),
                                  np.sort(np.argsort(-np.abs(acc))[:10]))


def _residual(store: MemoryStore) -> dict[str, np.ndarray]:
    compressor = Compressor(Compression(kind=Kind.TOPK, fraction=1.0), store=store)
    zero = {k: np.zeros_like(v) for k, v in MODEL.items()}
    return decode_update(compressor.compress(zero), SPEC)  # fraction 1 sends the residual


def test_error_feedback_state_lives_in_the_clients_state_directory(tmp_path: Path) -> None:
    setting = Compression(kind=Kind.TOPK, fraction=0.05)
    with StateDir.open(tmp_path / "state") as state:
        sent1 = decode_update(Compressor(setting, store=state).compress(_update(0)), SPEC)
    with StateDir.open(tmp_path / "state") as state:  # a restarted client
        sent2 = decode_update(Compressor(setting, store=state).compress(_update(1)), SPEC)

    memory = MemoryStore()
    again = Compressor(setting, store=memory)
    np.testing.assert_array_equal(decode_update(again.compress(_update(0)), SPEC)["w"],
                                  sent1["w"])
    np.testing.assert_array_equal(decode_update(again.compress(_update(1)), SPEC)["w"],
                                  sent2["w"])
    assert (tmp_path / "state" / "topk_residual").exists()


def test_a_residual_of_another_model_is_dropped() -> None:
    store = MemoryStore()
    Compressor(Compression(kind=Kind.TOPK, fraction=0.1), store=store).compress(
        {"v": np.ones(3, np.float32)})

    payload = Compressor(Compression(kind=Kind.TOPK, fraction=1.0), store=store).compress(_update(0))

    np.testing.assert_array_equal(decode_update(payload, SPEC)["w"], _update(0)["w"])


def test_top_k_needs_a_store() -> None:
    with pytest.raises(ValueError, match="store"):
        Compressor(Compression(kind=Kind.TOPK))


def test_a_dense_update_decodes_as_itself() -> None:
    update = _update(3)

    decoded = decode_update(dict(update), SPEC)

    assert not is_compressed(SPEC)
    np.testing.assert_array_equal(decoded["w"], update["w"])


def _good() -> dict[str, np.ndarray]:
    return Compressor(Compression(kind=Kind.TOPK, fraction=0.1), store=MemoryStore()).compress(
        _update(0))


@pytest.mark.parametrize("damage", [
    lambda p: p.pop("w#val"),
    lambda p: p.__setitem__("w", np.zeros((20, 5), np.float32)),  # two forms of w
    lambda p: p.__setitem__("extra#q8", np.zeros(1, np.uint8)),
    lambda p: p.__setitem__("w#idx", p["w#idx"][::-1].copy()),  # not ascending
    lambda p: p.__setitem__("w#idx", p["w#idx"] + 1000),  # out of range
    lambda p: p.__setitem__("w#val", p["w#val"].astype(np.float64)),
    lambda p: p.__setitem__("steps#q8", np.zeros(1, np.uint8)),  # integers are never compressed
])
def test_malformed_payloads_are_refused(damage: object) -> None:
    payload = _good()
    damage(payload)  # type: ignore[operator]

    with pytest.raises(WireError):
        decode_update(payload, SPEC)


def test_a_quantised_payload_with_a_bad_range_or_size_is_refused() -> None:
    payload = Compressor(Compression(kind=Kind.QUANTIZE, bits=4)).compress(_update(0))
    payload["w#range"] = np.array([0.0, np.inf])
    with pytest.raises(WireError):
        decode_update(payload, SPEC)
    payload["w#range"] = np.array([0.0, 1.0])
    payload["w#q4"] = payload["w#q4"][:-1].copy()
    with pytest.raises(WireError):
        check_layout(spec_of(payload), SPEC)
