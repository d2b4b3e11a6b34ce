"""Prometheus metrics of a coordinator, as a `ServerObserver`.

Each `CoordinatorMetrics` owns its `CollectorRegistry` (no global registry), so several
coordinators, or tests, in one process never share counters. `serve()` exposes the registry
over HTTP for Prometheus to scrape.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fedcore.compression.codec import UPLOAD_BYTES
from fedcore.engine.records import RoundRecord

ROUND_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
PHASE_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class CoordinatorMetrics:
    """Counters, gauges and histograms of one coordinator, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.rounds = Counter(
            "fedcore_rounds_completed", "Rounds completed, by status.", ["status"], registry=r
        )
        self.round_duration = Histogram(
            "fedcore_round_duration_seconds", "Duration of completed rounds.",
            buckets=ROUND_BUCKETS, registry=r,
        )
        self.current_round = Gauge("fedcore_round", "The round in progress or last completed.",
                                   registry=r)
        self.connected = Gauge("fedcore_clients_connected", "Clients available for selection.",
                               registry=r)
        self.outstanding = Gauge(
            "fedcore_clients_outstanding", "Selected clients whose task is still open.", registry=r
        )
        self.selected = Gauge("fedcore_clients_selected", "Clients selected in the last round.",
                              registry=r)
        self.reporting = Gauge(
            "fedcore_clients_reporting", "Clients whose result counted in the last round.",
            registry=r,
        )
        self.dropped = Counter(
            "fedcore_clients_dropped", "Selected clients that did not report, summed over rounds.",
            registry=r,
        )
        self.joins = Counter("fedcore_client_joins", "Successful joins (first or again).",
                             registry=r)
        self.bytes_in = Counter(
            "fedcore_received_bytes", "Message bytes received, by RPC.", ["method"], registry=r
        )
        self.bytes_out = Counter(
            "fedcore_sent_bytes", "Message bytes sent, by RPC.", ["method"], registry=r
        )
        self.upload_bytes = Counter(
            "fedcore_upload_bytes",
            "Payload bytes of the training results rounds accepted (compressed, dense or masked "
            "updates), summed over rounds.", registry=r,
        )
        self.last_upload_bytes = Gauge(
            "fedcore_round_upload_bytes", "Payload bytes of the last round's accepted results.",
            registry=r,
        )
        self.rpcs = Counter("fedcore_rpcs", "RPCs finished, by method and status code.",
                            ["method", "code"], registry=r)
        self.errors = Counter(
            "fedcore_rpc_errors", "RPCs that ended with an error, by gRPC status code (the kind).",
            ["code"], registry=r,
        )
        self.epsilon = Gauge(
            "fedcore_privacy_epsilon",
            "Epsilon spent so far, by DP mechanism (local, user, distributed, distributed_approx).",
            ["mechanism"], registry=r,
        )
        self.secagg_phase = Histogram(
            "fedcore_secagg_phase_seconds", "Duration of secure-aggregation phases.", ["phase"],
            buckets=PHASE_BUCKETS, registry=r,
        )
        self._http: Any = None

    # ----------------------------------------------------------------- ServerObserver
    def rpc_finished(self, method: str, code: str) -> None:
        """Count the RPC; a non-OK code counts as an error of that kind."""
        name = _short(method)
        self.rpcs.labels(method=name, code=code).inc()
        if code != "OK":
            self.errors.labels(code=code).inc()

    def bytes_transferred(self, method: str, *, received: int, sent: int) -> None:
        """Add wire bytes."""
        name = _short(method)
        if received:
            self.bytes_in.labels(method=name).inc(received)
        if sent:
            self.bytes_out.labels(method=name).inc(sent)

    def client_joined(self, client_id: str, peer: str) -> None:
        """Count a join."""
        self.joins.inc()

    def engine_ticked(self, *, connected: int, outstanding: int, round_number: int) -> None:
        """Refresh the gauges."""
        self.connected.set(connected)
        self.outstanding.set(outstanding)
        self.current_round.set(round_number)

    def round_completed(self, record: RoundRecord) -> None:
        """Count the round, its participants and its upload bytes; set each DP mechanism's ε."""
        self.rounds.labels(status=record.status).inc()
        self.round_duration.observe(record.duration_s)
        self.selected.set(record.clients_selected)
        self.reporting.set(record.results_received)
        self.dropped.inc(max(0, record.clients_selected - record.results_received))
        for mechanism, spent in record.epsilons().items():
            self.epsilon.labels(mechanism=mechanism.name.lower()).set(spent)
        uploaded = record.metrics.get(UPLOAD_BYTES)
        if uploaded is not None:
            self.upload_bytes.inc(uploaded)
            self.last_upload_bytes.set(uploaded)

    def secagg_phase_finished(self, phase: str, seconds: float) -> None:
        """Time one secure-aggregation phase."""
        self.secagg_phase.labels(phase=phase).observe(seconds)

    # ----------------------------------------------------------------- HTTP
    def serve(self, port: int, address: str = "0.0.0.0") -> int:
        """Serve `/metrics` on `address:port` (0 picks a free port) in a daemon thread."""
        server, _thread = start_http_server(port, address, registry=self.registry)
        self._http = server
        return int(server.server_port)

    def close(self) -> None:
        """Stop the HTTP endpoint, if serving."""
        server, self._http = self._http, None
        if server is not None:
            server.shutdown()
            server.server_close()


def _short(method: str) -> str:
    """`/fedcore.v1.Coordinator/Join` -> `Join`."""
    return method.rsplit("/", 1)[-1] or method
