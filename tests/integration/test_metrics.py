"""Prometheus metrics of a coordinator, scraped over HTTP on loopback after real rounds."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fedcore.coordinator.metrics import CoordinatorMetrics
from fedcore.engine import EngineConfig, SelectionConfig

from .conftest import summary_of, wait_until

pytestmark = pytest.mark.timeout(120)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the endpoint, keyed by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_after_two_rounds(start_coordinator, spawn_client) -> None:
    # arrange
    metrics = CoordinatorMetrics()
    port = metrics.serve(0, "127.0.0.1")
    config = EngineConfig(num_rounds=2, train=SelectionConfig(count=2, min_results=2, min_available=2))
    server = start_coordinator(config, {"w": np.zeros(4, np.float32)}, observer=metrics)
    address = f"127.0.0.1:{server.port}"

    # act
    procs = [spawn_client(address, f"c{k}") for k in (1, 2)]
    assert server.wait(60)
    for proc in procs:
        summary_of(proc)
    sample = scrape(port)
    metrics.close()

    # assert
    assert sample[("fedcore_rounds_completed_total", (("status", "ok"),))] == 2
    assert sample[("fedcore_round_duration_seconds_count", ())] == 2
    assert sample[("fedcore_round_duration_seconds_sum", ())] > 0
    assert sample[("fedcore_round", ())] == 2
    assert sample[("fedcore_clients_selected", ())] == 2
    assert sample[("fedcore_clients_reporting", ())] == 2
    assert sample[("fedcore_clients_dropped_total", ())] == 0
    assert sample[("fedcore_client_joins_total", ())] >= 2
    # the model is 16 bytes: two downloads per round at least carry it out, results carry it in
    assert sample[("fedcore_sent_bytes_total", (("method", "DownloadModel"),))] >= 4 * 16
    assert sample[("fedcore_received_bytes_total", (("method", "SubmitResult"),))] >= 4 * 16
    assert sample[("fedcore_rpcs_total", (("code", "OK"), ("method", "Join")))] >= 2
    assert ("fedcore_secagg_phase_seconds_count", (("phase", "share_keys"),)) not in sample


def test_errors_are_counted_by_grpc_code(start_coordinator, spawn_client) -> None:
    # arrange: a coordinator that wants a token; a client that has none
    metrics = CoordinatorMetrics()
    config = EngineConfig(num_rounds=1, train=SelectionConfig(count=1))
    server = start_coordinator(config, {"w": np.zeros(4, np.float32)}, observer=metrics,
                               auth_token="s3cret")

    def errors(code: str) -> float:
        return metrics.registry.get_sample_value("fedcore_rpc_errors_total", {"code": code}) or 0.0

    # act
    proc = spawn_client(f"127.0.0.1:{server.port}", "intruder")
    wait_until(lambda: errors("UNAUTHENTICATED") >= 1)
    proc.kill()

    # assert
    assert server.engine.records == [] and server.engine.available_clients(0.0) == []


def test_secagg_phase_timings_are_exported() -> None:
    metrics = CoordinatorMetrics()

    metrics.secagg_phase_finished("share_keys", 0.25)

    assert metrics.registry.get_sample_value(
        "fedcore_secagg_phase_seconds_count", {"phase": "share_keys"}
    ) == 1
