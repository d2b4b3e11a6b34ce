"""MetricsMean: example-weighted means of scalar metrics."""

from __future__ import annotations

import pytest

from fedcore.aggregate.metrics import MetricsMean


def test_weighted_mean_of_each_metric() -> None:
    mean = MetricsMean()
    mean.add({"loss": 1.0, "accuracy": 0.5}, 10)
    mean.add({"loss": 3.0, "accuracy": 1.0}, 30)

    assert mean.result() == pytest.approx({"loss": 2.5, "accuracy": 0.875})


def test_metric_missing_from_a_client_is_averaged_over_the_others() -> None:
    mean = MetricsMean()
    mean.add({"loss": 1.0, "epsilon": 2.0}, 1)
    mean.add({"loss": 3.0}, 1)

    assert mean.result() == pytest.approx({"loss": 2.0, "epsilon": 2.0})


def test_non_finite_values_are_skipped() -> None:
    mean = MetricsMean()
    mean.add({"loss": float("nan")}, 5)
    mean.add({"loss": 4.0}, 1)

    assert mean.result() == {"loss": 4.0}


def test_nothing_added_gives_no_metrics() -> None:
    assert MetricsMean().result() == {}
