"""Clipping at its bound and the central noise's draw: an update whose norm is exactly C passes
bit for bit (only a norm above C is scaled), the clip's measurements are 0 when no update went
through it, and the noise added to the sum is the seeded generator's N(0, (zC)^2) draw (one per
tensor, in order), so a run is reproducible from its seed."""

from __future__ import annotations

import numpy as np
import pytest

from fedcore.aggregate.clip import Clip, clip_in_place
from fedcore.aggregate.dp_noise import GaussianNoise
from fedcore.aggregate.mean import WeightedMean


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_an_update_with_norm_exactly_the_bound_is_left_as_it_is(dtype: type) -> None:
    update = {"a": np.array([3.0, 0.0], dtype), "b": np.array([4.0], dtype)}  # norm 5 exactly

    norm = clip_in_place(update, 5.0)

    assert norm == 5.0
    assert update["a"].tolist() == [3.0, 0.0] and update["b"].tolist() == [4.0]


def test_the_first_norm_above_the_bound_is_scaled_under_it() -> None:
    update = {"a": np.array([3.0]), "b": np.array([4.0])}

    norm = clip_in_place(update, np.nextafter(5.0, 0.0))

    assert norm == 5.0
    assert update["a"][0] < 3.0 and update["b"][0] < 4.0
    assert float(np.hypot(update["a"][0], update["b"][0])) < 5.0


def test_a_clip_counts_an_update_at_the_bound_as_unclipped() -> None:
    clip = Clip(WeightedMean(), clip_norm=5.0)
    clip.add({"w": np.array([3.0, 4.0])}, 1.0)

    result = clip.result()

    assert result.measurements["clipped_fraction"] == 0.0
    np.testing.assert_array_equal(result.update["w"], [3.0, 4.0])


def test_a_clip_that_saw_no_update_reports_zero_measurements() -> None:
    # the inner aggregator was fed directly: nothing went through the clip, so it reports no
    # clipping and no norm (not a rate of 1 or a norm from nowhere)
    inner = WeightedMean()
    inner.add({"w": np.array([10.0])}, 1.0)
    clip = Clip(inner, clip_norm=1.0)

    result = clip.result()

    assert result.measurements["clipped_fraction"] == 0.0
    assert result.measurements["mean_update_norm"] == 0.0
    assert result.measurements["clip_norm"] == 1.0
    assert clip.stats.count == 0


def test_the_noise_is_the_seeded_generators_draw_added_to_the_sum() -> None:
    noised = GaussianNoise(WeightedMean(), noise_multiplier=2.0, clip_norm=0.5,
                           rng=np.random.default_rng(11), expected_clients=4)
    for values in ([1.0, 2.0, 3.0], [0.5, -1.0, 0.25]):
        noised.add({"a": np.array(values[:2]), "b": np.array(values[2:])}, 7.0)

    update = noised.result().update

    reference = np.random.default_rng(11)
    noise_a = reference.normal(0.0, 1.0, size=2)  # std z * C = 1.0, drawn tensor by tensor
    noise_b = reference.normal(0.0, 1.0, size=1)
    np.testing.assert_allclose(update["a"], (np.array([1.5, 1.0]) + noise_a) / 4, rtol=1e-12)
    np.testing.assert_allclose(update["b"], (np.array([3.25]) + noise_b) / 4, rtol=1e-12)
