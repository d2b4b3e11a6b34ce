"""Configuration of secure aggregation: the protocol mode and the numeric range.

The sum of `max_clients` values, each an integer in [0, levels], is below 2**bit_width,
so the modular sum the server recovers never wraps (`SecAggConfig.levels`).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

MAX_EXACT_LEVELS = 2**52  # float64 maps integers up to this exactly


class Mode(enum.Enum):
    """Which clients mask with which."""

    FULL = "full"  # every pair (Bonawitz et al. 2017)
    SECAGG_PLUS = "secagg+"  # a random k-regular graph (Bell et al. 2020)


@dataclass(frozen=True, slots=True, kw_only=True)
class SecAggConfig:
    """What a round of secure aggregation is configured with.

    Args:
        threshold: shares needed to reconstruct a secret; in SECAGG_PLUS mode it counts
            within a client's neighbourhood (itself included), so it is at most degree + 1.
        max_clients: the most clients whose inputs are summed; sets the quantisation levels.
        clip: inputs are clipped to [-clip, clip] before quantisation.
        bit_width: b, the modulus is 2**b; masked coordinates travel as b bits.
        mode: FULL or SECAGG_PLUS.
        degree: neighbours per client in SECAGG_PLUS (rounded up to even); ignored in FULL.
    """

    threshold: int
    max_clients: int
    clip: float
    bit_width: int = 32
    mode: Mode = Mode.FULL
    degree: int = 0

    def __post_init__(self) -> None:
        if self.max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {self.max_clients}")
        if not 1 <= self.bit_width <= 64:
            raise ValueError(f"bit_width must be in [1, 64], got {self.bit_width}")
        if (2**self.bit_width - 1) // self.max_clients < 1:
            raise ValueError(
                f"bit_width {self.bit_width} leaves no quantisation levels for "
                f"max_clients {self.max_clients}; use choose_bit_width()"
            )
        if not (math.isfinite(self.clip) and self.clip > 0):
            raise ValueError(f"clip must be a positive finite number, got {self.clip}")
        if self.threshold < 1:
            raise ValueError(f"threshold must be >= 1, got {self.threshold}")
        if self.mode is Mode.SECAGG_PLUS:
            if self.degree < 2:
                raise ValueError(f"degree must be >= 2 in SECAGG_PLUS mode, got {self.degree}")
            if self.threshold > self.even_degree + 1:
                raise ValueError(
                    f"threshold {self.threshold} exceeds degree + 1 = {self.even_degree + 1}"
                )

    @property
    def even_degree(self) -> int:
        """The degree actually used: `degree` rounded up to an even number."""
        return self.degree + self.degree % 2

    def complete_for(self, num_clients: int) -> bool:
        """Whether every client of a round of `num_clients` neighbours every other."""
        return self.mode is Mode.FULL or self.even_degree >= num_clients - 1

    @property
    def levels(self) -> int:
        """Each client's quantised coordinate lies in [0, levels]."""
        levels: int = min((2**self.bit_width - 1) // self.max_clients, MAX_EXACT_LEVELS)
        return levels


def choose_bit_width(max_clients: int, precision_bits: int) -> int:
    """The smallest b such that max_clients values of `precision_bits` bits sum below 2**b.

    Raises:
        ValueError: when the result would exceed 64 bits.
    """
    if max_clients < 1 or precision_bits < 1:
        raise ValueError("max_clients and precision_bits must be >= 1")
    bits = precision_bits + math.ceil(math.log2(max_clients))
    if bits > 64:
        raise ValueError(f"{bits} bits needed; at most 64 are supported")
    return bits


def suggested_degree(num_clients: int) -> int:
    """A SecAgg+ degree of order log n (Bell et al. 2020 use a small multiple of log2 n)."""
    return max(2, 2 * math.ceil(math.log2(max(num_clients, 2))))


def suggested_signed_degree(num_clients: int) -> int:
    """A degree for signed SecAgg+ rounds: twice `suggested_degree`.

    A signed round needs 2t > 3k/2 + 1 (`fedcore.secagg.safety`), so a neighbourhood of k + 1
    tolerates only about k/4 dropouts; twice the degree keeps rounds of 100 clients with 10%
    dropouts completing about nine times in ten (k = 28; k = 40 about 199 in 200).
    """
    return 2 * suggested_degree(num_clients)


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundSpec:
    """What the server and every client of one round agree on before it starts.

    Clients are numbered 1..num_clients by the caller (a map from its own client ids).

    Args:
        config: the secure-aggregation configuration.
        round_id: the round number; bound into every key derivation and signature.
        num_clients: the clients selected for the round.
        dim: the length of the integer vector being summed.
        graph_seed: 32 bytes choosing the SECAGG_PLUS neighbour graph (public); ignored in
            committed-graph rounds, whose seed the clients derive together.
        identities: Ed25519 public keys (raw, 32 bytes) of clients 1..n; when given, keys
            are signed and a consistency-check round protects against a malicious server.
    """

    config: SecAggConfig
    round_id: int
    num_clients: int
    dim: int
    graph_seed: bytes = bytes(32)
    identities: tuple[bytes, ...] | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.round_id < 2**63:
            raise ValueError(f"round_id must be in [0, 2**63), got {self.round_id}")
        if not 1 <= self.num_clients <= self.config.max_clients:
            raise ValueError(
                f"num_clients must be in [1, max_clients={self.config.max_clients}], "
                f"got {self.num_clients}"
            )
        if self.config.threshold > self.num_clients:
            raise ValueError(
                f"threshold {self.config.threshold} exceeds num_clients {self.num_clients}"
            )
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {self.dim}")
        if len(self.graph_seed) != 32:
            raise ValueError("graph_seed must be 32 bytes")
        if self.identities is not None:
            if len(self.identities) != self.num_clients:
                raise ValueError("identities must hold one key per client")
            if any(len(key) != 32 for key in self.identities):
                raise ValueError("identities must be raw 32-byte Ed25519 public keys")

    @property
    def signed(self) -> bool:
        """Whether clients sign their keys and the consistency check runs."""
        return self.identities is not None

    @property
    def complete_graph(self) -> bool:
        """Whether every client neighbours every other (FULL, or a degree of n - 1 or more)."""
        return self.config.complete_for(self.num_clients)

    @property
    def committed_graph(self) -> bool:
        """Whether the graph seed comes from the clients' committed nonces (signed, sparse)."""
        return self.signed and not self.complete_graph

    @property
    def clients(self) -> range:
        """The client ids of the round, 1..num_clients."""
        return range(1, self.num_clients + 1)
