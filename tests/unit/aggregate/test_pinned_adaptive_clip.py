"""Adaptive clipping (Andrew et al. 2021) with its defaults: the clip norm stays put when the
(noiseless) unclipped fraction is the target quantile of one half, and moves by
exp(-0.2 (b - 1/2)) otherwise; each setting's range is checked at its ends."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedcore.aggregate.clip import ClipStats
from fedcore.aggregate.dp_noise import AdaptiveClipping, AdaptiveClipState, next_clip_state


def _step(config: AdaptiveClipping, unclipped: int, count: int = 4,
          clip: float = 2.0) -> tuple[float, float]:
    state, metrics = next_clip_state(
        AdaptiveClipState(clip_norm=clip),
        ClipStats(count=count, unclipped_count=unclipped, norm_sum=0.0),
        config=config, expected_clients=count, rng=np.random.default_rng(0))
    return state.clip_norm, metrics["noisy_unclipped_fraction"]


def test_the_default_target_is_the_median_update_norm() -> None:
    clip, fraction = _step(AdaptiveClipping(count_noise_std=0.0), unclipped=2)
    assert fraction == 0.5 and clip == 2.0


def test_the_default_learning_rate_is_0_2() -> None:
    clip, fraction = _step(AdaptiveClipping(count_noise_std=0.0), unclipped=4)
    assert fraction == 1.0
    assert clip == pytest.approx(2.0 * math.exp(-0.2 * 0.5))
    clip, _ = _step(AdaptiveClipping(count_noise_std=0.0), unclipped=0)
    assert clip == pytest.approx(2.0 * math.exp(0.2 * 0.5))


@pytest.mark.parametrize(("field", "refused", "accepted"), [
    ("target_quantile", -1e-9, 0.0),
    ("target_quantile", 1.000001, 1.0),
    ("learning_rate", 0.0, 1e-9),
    ("learning_rate", math.nan, 0.2),
    ("count_noise_std", -1e-9, 0.0),
    ("count_noise_std", math.nan, 1.0),
])
def test_each_setting_is_checked_at_its_ends(field: str, refused: float, accepted: float) -> None:
    base = {"count_noise_std": 1.0}
    with pytest.raises(ValueError):
        AdaptiveClipping(**{**base, field: refused})  # type: ignore[arg-type]
    assert getattr(AdaptiveClipping(**{**base, field: accepted}), field) == accepted  # type: ignore[arg-type]


def test_expected_clients_must_be_at_least_one() -> None:
    config = AdaptiveClipping(count_noise_std=0.0)
    stats = ClipStats(count=1, unclipped_count=1, norm_sum=0.0)
    with pytest.raises(ValueError):
        next_clip_state(AdaptiveClipState(clip_norm=1.0), stats, config=config,
                        expected_clients=0, rng=np.random.default_rng(0))
    state, _ = next_clip_state(AdaptiveClipState(clip_norm=1.0), stats, config=config,
                               expected_clients=1, rng=np.random.default_rng(0))
    assert state.clip_norm == pytest.approx(math.exp(-0.2 * 0.5))
