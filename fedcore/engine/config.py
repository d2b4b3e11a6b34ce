"""Settings of the round engine, validated when constructed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from fedcore.dp.secagg_noise import NoisyEncoding
from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.secagg.config import Mode, SecAggConfig, suggested_degree, suggested_signed_degree
from fedcore.secagg.roster import Roster
from fedcore.secagg.safety import least_signed_threshold
from fedcore.wire.tensor import DEFAULT_CHUNK_BYTES

# The one set of default deadlines (seconds), for the engine and for [rounds] alike: a round
# waits up to two minutes for training, one for evaluation, and a client silent for two
# minutes counts as gone.
ROUND_TIMEOUT_S = 120.0
EVAL_TIMEOUT_S = 60.0
CLIENT_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SelectionConfig:
    """How many clients a round asks for and how many it needs.

    Exactly one of `count` (clients per round) and `fraction` (of the available clients) is set.
    The round closes as soon as that many results arrive. `over_selection` asks that fraction
    more clients than needed, so stragglers and dropouts do not hold the round up.
    `min_results` is what a round needs by its deadline to count; `min_available` is how many
    clients must be connected before a round starts.
    """

    count: int = 0
    fraction: float = 0.0
    over_selection: float = 0.0
    min_results: int = 1
    min_available: int = 1

    def __post_init__(self) -> None:
        if (self.count > 0) == (self.fraction > 0):
            raise ValueError("set exactly one of count (> 0) and fraction (in (0, 1])")
        if self.count < 0 or not 0 <= self.fraction <= 1:
            raise ValueError(f"count must be >= 0 and fraction in [0, 1], got {self}")
        if self.over_selection < 0:
            raise ValueError(f"over_selection must be >= 0, got {self.over_selection}")
        if self.min_results < 1 or self.min_available < 1:
            raise ValueError("min_results and min_available must be >= 1")
        if self.min_results > self.min_available:
            raise ValueError(
                f"min_results ({self.min_results}) cannot exceed min_available "
                f"({self.min_available}): the round could never succeed"
            )

    def target(self, available: int) -> int:
        """Results the round waits for, given how many clients are available."""
        wanted = self.count if self.count else math.ceil(self.fraction * available)
        return max(self.min_results, min(wanted, available))

    def to_select(self, available: int) -> int:
        """Clients to select: the target plus over-selection, capped by what is available."""
        return min(available, math.ceil(self.target(available) * (1 + self.over_selection)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Bounds on everything an untrusted client controls (docs/reliability.md).

    Join: `max_client_id_chars`, and at most `max_properties` properties of at most
    `max_properties_bytes` (UTF-8 keys and values together); at most `max_clients` registered
    at once, and a client not heard from for `client_evict_s` (and at least the engine's
    `client_timeout_s`) is forgotten: it must join again.
    Results: at most `max_metrics` metrics with keys of at most `max_metric_key_chars`; an upload
    of n bytes comes in at most 1 + n // `min_chunk_bytes` chunks, none empty; the bytes of all
    uploads in progress together stay within `upload_budget_mb` (beyond it: RESOURCE_EXHAUSTED);
    an upload that sends nothing for `upload_idle_s` is aborted.
    """

    max_client_id_chars: int = 256
    max_properties: int = 32
    max_properties_bytes: int = 4096
    max_clients: int = 10_000
    client_evict_s: float = 3600.0
    max_metrics: int = 64
    max_metric_key_chars: int = 64
    min_chunk_bytes: int = 4096
    upload_budget_mb: float = 1024.0
    upload_idle_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_client_id_chars", "max_properties_bytes", "max_clients",
                     "max_metric_key_chars", "min_chunk_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_properties", "max_metrics"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("client_evict_s", "upload_budget_mb", "upload_idle_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def upload_budget_bytes(self) -> int:
        """`upload_budget_mb` in bytes."""
        return int(self.upload_budget_mb * (1 << 20))

    def max_chunks(self, nbytes: int) -> int:
        """The most chunks an upload of `nbytes` may come in."""
        return 1 + nbytes // self.min_chunk_bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Everything the round engine needs to know; times are in seconds."""

    num_rounds: int
    train: SelectionConfig = field(default_factory=lambda: SelectionConfig(fraction=1.0))
    evaluate: SelectionConfig | None = field(default_factory=lambda: SelectionConfig(fraction=1.0))
    eval_every: int = 1
    round_timeout_s: float = ROUND_TIMEOUT_S
    eval_timeout_s: float = EVAL_TIMEOUT_S
    client_timeout_s: float = CLIENT_TIMEOUT_S
    retry_after_s: float = 1.0
    seed: int = 0
    max_payload_bytes: int = 4 << 30
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    secagg: SecureAggregationConfig | None = None
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.num_rounds < 1:
            raise ValueError(f"num_rounds must be >= 1, got {self.num_rounds}")
        if self.eval_every < 1:
            raise ValueError(f"eval_every must be >= 1, got {self.eval_every}")
        for name in ("round_timeout_s", "eval_timeout_s", "client_timeout_s", "retry_after_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_payload_bytes < 1 or self.chunk_bytes < 1:
            raise ValueError("max_payload_bytes and chunk_bytes must be >= 1")


@dataclass(frozen=True, slots=True, kw_only=True)
class SecureAggregationConfig:
    """Sum the clients' updates with secure aggregation instead of seeing them.

    Args:
        mode: every pair masked (FULL) or a random graph of `degree` neighbours (SECAGG_PLUS;
            0 picks O(log n): `suggested_degree`, or in signed rounds the larger
            `suggested_signed_degree`, whose higher threshold needs more neighbours to
            tolerate dropouts).
        threshold_fraction: t = ceil(fraction * n) clients (in SECAGG_PLUS: of a neighbourhood)
            must survive every phase; the round aborts below.
        clip: each weighted update coordinate is clipped to [-clip, clip] before quantising.
        bit_width: b; sums are exact modulo 2**b for up to `max_clients` clients.
        max_clients: the most clients a round may select (sets the quantisation levels).
        weight_cap: example counts are divided by this, capped at 1, to weight updates.
        phase_timeout_s: how long each protocol phase waits for clients.
        distributed_dp: clients clip, send unweighted and add integer noise before masking
            (`fedcore.dp.secagg_noise`); None for none.
        roster: signed rounds (`fedcore.secagg.roster`): only clients on the roster may join,
            they sign their keys and the survivor list, and the threshold is at least
            `fedcore.secagg.safety.least_signed_threshold`; None for unsigned rounds (an
            honest-but-curious coordinator).
    """

    mode: Mode = Mode.FULL
    threshold_fraction: float = 2 / 3
    degree: int = 0
    clip: float = 1.0
    bit_width: int = 32
    max_clients: int = 100
    weight_cap: float = 1000.0
    phase_timeout_s: float = 30.0
    distributed_dp: DistributedDPConfig | None = None
    roster: Roster | None = None

    def __post_init__(self) -> None:
        if self.roster is not None and not len(self.roster):
            raise ValueError("the roster is empty: add clients with `fedcore identity`")
        if not 0 < self.threshold_fraction <= 1:
            raise ValueError(f"threshold_fraction must be in (0, 1], got {self.threshold_fraction}")
        if self.degree < 0 or self.max_clients < 1:
            raise ValueError("degree must be >= 0 and max_clients >= 1")
        if not (self.clip > 0 and self.weight_cap > 0 and self.phase_timeout_s > 0):
            raise ValueError("clip, weight_cap and phase_timeout_s must be > 0")
        numeric = SecAggConfig(threshold=1, max_clients=self.max_clients, clip=self.clip,
                               bit_width=self.bit_width)  # checks the numeric range now
        if self.distributed_dp is not None:  # noise tails must fit the bit width: check now,
            # for the smallest real round (one parameter and the weight slot); a larger model
            # leaves less room, and its round refuses to open with the same error
            NoisyEncoding.for_round(self.distributed_dp, numeric, dim=2)

    def for_round(self, num_clients: int) -> SecAggConfig:
        """The protocol configuration for a round of `num_clients`.

        In signed rounds the threshold is at least `least_signed_threshold`, the least every
        client accepts (`fedcore.secagg.safety`).
        """
        degree = 0
        if self.mode is Mode.SECAGG_PLUS:
            suggest = suggested_signed_degree if self.roster is not None else suggested_degree
            degree = min(self.degree or suggest(num_clients), max(2, num_clients - 1))
        config = SecAggConfig(threshold=1, max_clients=self.max_clients, clip=self.clip,
                              bit_width=self.bit_width, mode=self.mode, degree=degree)
        size = num_clients if config.complete_for(num_clients) else config.even_degree + 1
        threshold = max(1, math.ceil(self.threshold_fraction * size))
        if self.roster is not None:
            threshold = max(threshold, least_signed_threshold(config, num_clients))
        return replace(config, threshold=min(threshold, size))
