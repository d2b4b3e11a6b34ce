"""Clip: every update that reaches the inner aggregator has norm <= C."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.aggregate.base import AggregateResult
from fedcore.aggregate.clip import Clip
from fedcore.aggregate.mean import WeightedMean
from fedcore.protocol.params import Array, global_norm


class Recording:
    """Inner double: keeps copies of what it was given, returns a recognisable result."""

    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, Array], float]] = []

    def add(self, update: dict[str, Array], weight: float) -> None:
        self.seen.append(({k: v.copy() for k, v in update.items()}, weight))

    def result(self) -> AggregateResult:
        return AggregateResult(update={"marker": np.ones(1)}, count=len(self.seen),
                               total_weight=7.0, measurements={"inner": 1.0})


def _update(rng: np.random.Generator, scale: float) -> dict[str, Array]:
    return {"w": (rng.normal(size=(4, 5)) * scale).astype(np.float32),
            "b": (rng.normal(size=5) * scale).astype(np.float32)}


def test_every_update_reaching_inner_respects_the_bound():
    rng = np.random.default_rng(0)
    inner = Recording()
    clip = Clip(inner, clip_norm=1.5)

    for scale in np.geomspace(0.01, 100, 40):
        clip.add(_update(rng, float(scale)), 1.0)

    assert len(inner.seen) == 40
    assert all(global_norm(update) <= 1.5 for update, _ in inner.seen)


def test_updates_within_the_bound_pass_unchanged_and_weights_pass_through():
    small = {"w": np.full(3, 0.1, dtype=np.float32)}
    inner = Recording()

    Clip(inner, clip_norm=1.0).add({k: v.copy() for k, v in small.items()}, 3.0)

    np.testing.assert_array_equal(inner.seen[0][0]["w"], small["w"])
    assert inner.seen[0][1] == 3.0


def test_clipping_keeps_the_direction():
    update = {"a": np.array([3.0, 4.0]), "b": np.array([12.0])}  # norm 13
    inner = Recording()

    Clip(inner, clip_norm=1.0).add(update, 1.0)

    got = inner.seen[0][0]
    np.testing.assert_allclose(np.concatenate([got["a"], got["b"]]),
                               np.array([3.0, 4.0, 12.0]) / 13, rtol=1e-5)


def test_measurements_report_clip_rate_and_mean_norm_beside_the_inner_ones():
    clip = Clip(Recording(), clip_norm=2.0)
    for norm in (1.0, 3.0, 5.0, 1.5):
        clip.add({"x": np.array([norm])}, 1.0)

    result = clip.result()

    assert result.update["marker"][0] == 1.0  # the inner result, untouched
    assert result.measurements == {"inner": 1.0, "clip_norm": 2.0, "clipped_fraction": 0.5,
                                   "mean_update_norm": 2.625}
    assert clip.stats.count == 4 and clip.stats.unclipped_count == 2


def test_clipped_mean_has_norm_at_most_the_clip():
    rng = np.random.default_rng(1)
    clip = Clip(WeightedMean(), clip_norm=0.5)
    for _ in range(10):
        clip.add(_update(rng, 10.0), float(rng.integers(1, 100)))

    assert global_norm(clip.result().update) <= 0.5


@pytest.mark.parametrize("bad", [np.array([np.nan, 1.0]), np.array([np.inf]),
                                 np.array([1, 2], dtype=np.int32)])
def test_bad_update_is_rejected_and_changes_nothing(bad: Array):
    inner = Recording()
    clip = Clip(inner, clip_norm=1.0)

    with pytest.raises(ValueError):
        clip.add({"x": bad}, 1.0)

    assert inner.seen == [] and clip.stats.count == 0


@pytest.mark.parametrize("clip_norm", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_clip_norm_is_rejected(clip_norm: float):
    with pytest.raises(ValueError, match="clip_norm"):
        Clip(Recording(), clip_norm=clip_norm)
