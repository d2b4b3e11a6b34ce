"""The protocol's messages as typed dataclasses, shared by the coordinator, clients and drivers.

The wire layer (`fedcore.wire.convert`) maps them to and from protobuf; the round engine and the
client's task handler see only these.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from fedcore.protocol.distributed_dp import DistributedDPConfig
from fedcore.protocol.params import Array, Metrics
from fedcore.protocol.specs import EMPTY_SPEC, ModelSpec
from fedcore.secagg.config import RoundSpec
from fedcore.secagg.messages import ClientMessage, ServerMessage

PROTOCOL_VERSION = 1
MASKED_TENSOR = "masked"
"""Name of the one uint8 tensor that carries a masked vector in a secure-aggregation result."""


class TaskKind(enum.Enum):
    """What a client is asked to do."""

    TRAIN = "train"
    EVALUATE = "evaluate"
    INITIALIZE = "initialize"
    SECAGG = "secagg"


@dataclass(frozen=True, slots=True, kw_only=True)
class SecAggSetup:
    """A selected client's part in a secure-aggregation round: the round's spec and its id.

    In a signed round `participants` names the client ids of protocol ids 1..n; clients look
    their identity keys up in their own roster (`fedcore.secagg.roster`).

    The client sends its update weighted by `min(num_examples / weight_cap, 1)`, or, with
    `distributed_dp`, clipped, unweighted and noised (`fedcore.dp.secagg_noise`).
    """

    client: int
    spec: RoundSpec
    weight_cap: float
    distributed_dp: DistributedDPConfig | None = None
    participants: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.client not in self.spec.clients:
            raise ValueError(f"client {self.client} is not in 1..{self.spec.num_clients}")
        if self.participants and len(self.participants) != self.spec.num_clients:
            raise ValueError(f"{len(self.participants)} participants named for "
                             f"{self.spec.num_clients} clients")
        if not self.weight_cap > 0:
            raise ValueError(f"weight_cap must be > 0, got {self.weight_cap}")


SecAggServerStep = SecAggSetup | ServerMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalDPConfig:
    """Sample-level DP-SGD on each client.

    Either `noise_multiplier` > 0, or `target_epsilon` > 0 with `planned_rounds`, from which
    each client derives the noise multiplier that spends exactly its budget over the plan.
    `target_epsilon` is also each client's budget: it declines tasks beyond it.
    """

    noise_multiplier: float = 0.0
    max_grad_norm: float = 1.0
    target_epsilon: float = 0.0
    delta: float = 1e-5
    planned_rounds: int = 0

    def __post_init__(self) -> None:
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {self.delta}")
        if self.noise_multiplier < 0 or self.target_epsilon < 0:
            raise ValueError("noise_multiplier and target_epsilon must be >= 0")
        if (self.noise_multiplier > 0) == (self.target_epsilon > 0 and self.planned_rounds > 0):
            raise ValueError(
                "set either noise_multiplier, or target_epsilon with planned_rounds"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainConfig:
    """Local training settings the coordinator sends with a TRAIN task."""

    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 0.01
    proximal_mu: float = 0.0
    max_train_s: float = 0.0
    local_dp: LocalDPConfig | None = None

    def __post_init__(self) -> None:
        if self.local_epochs < 1:
            raise ValueError(f"local_epochs must be >= 1, got {self.local_epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.proximal_mu < 0:
            raise ValueError(f"proximal_mu must be >= 0, got {self.proximal_mu}")
        if self.max_train_s < 0:
            raise ValueError(f"max_train_s must be >= 0, got {self.max_train_s}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    """One unit of work for one client."""

    round: int
    task_id: str
    kind: TaskKind
    train: TrainConfig = field(default_factory=TrainConfig)
    time_left_s: float = 0.0
    model_spec: ModelSpec = EMPTY_SPEC
    secagg: SecAggServerStep | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CoordinatorLimits:
    """Limits a coordinator states when a client joins; 0 means "not stated"."""

    max_message_bytes: int = 0
    max_payload_bytes: int = 0
    chunk_bytes: int = 0
    min_chunk_bytes: int = 0
    max_metrics: int = 0
    max_metric_key_chars: int = 0
    max_client_id_bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinReply:
    """A joined client's session and what the coordinator tells it about itself.

    `long_poll_s` is the longest a `GetTask` is held (0: not stated, an older coordinator).
    """

    session: bytes
    client_timeout_s: float
    long_poll_s: float = 0.0
    limits: CoordinatorLimits = field(default_factory=CoordinatorLimits)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitReply:
    """A result was taken (or a decline noted): call `GetTask` again after `retry_after_s`."""

    retry_after_s: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Wait:
    """No work now; poll again after `retry_after_s`."""

    retry_after_s: float
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Done:
    """The run is over; the client should leave."""

    reason: str = ""


TaskReply = Task | Wait | Done


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultHeader:
    """What a client says about its result before (or instead of) the tensors."""

    client_id: str
    task_id: str
    num_examples: int
    metrics: Metrics = field(default_factory=dict)
    spec: ModelSpec = EMPTY_SPEC
    declined_reason: str = ""
    permanent: bool = False
    secagg: ClientMessage | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskResult:
    """A complete result: the header plus, for TRAIN and INITIALIZE, the tensors.

    For TRAIN the tensors are the update (local model minus the global model it started from);
    for INITIALIZE they are the client's initial parameters.
    """

    header: ResultHeader
    tensors: dict[str, Array] = field(default_factory=dict)
