"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def local_ray() -> Iterator[ModuleType]:
    """One local Ray for the session (2 CPUs, no dashboard), shut down after its last user.

    Skips without Ray (the optional [ray] extra), except under CI (`CI=true`), whose install
    includes it: there a missing Ray fails instead of hiding the Ray tests.
    """
    if os.environ.get("CI") == "true":
        import ray
    else:
        ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'fedcore[ray]'")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no report home from a test run
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            yield ray
        finally:
            ray.shutdown()
