"""The one boundary to Opacus: local DP-SGD, ε from an accountant history, noise calibration.

Guarantee (sample-level, add/remove-one-example neighbours): each optimizer step of
`train_private` clips every per-sample gradient to L2 norm `max_grad_norm` and adds Gaussian
noise of standard deviation `noise_multiplier * max_grad_norm` to their sum, over a batch drawn
by Poisson sampling with rate `1 / len(data_loader)` (Opacus' `DPDataLoader`). That is the
subsampled Gaussian mechanism, and ε for any composition of such steps is what Opacus'
accountant (RDP or PRV) computes from the history `(noise_multiplier, sample_rate, steps)`.
The FedProx proximal term does not touch the data, so adding its gradient after the noise is
post-processing and costs no privacy. Not covered: the reported loss and `num_examples` (exact
dataset size), which a client releases outside the guarantee unless the caller withholds them.

Secure randomness (`train_private(secure_mode=True)`, a client's `secure_rng`). Opacus' own
`secure_mode` needs `torchcsprng`, whose last release (0.2.1, 2021) is built for torch 1.8 only
(pytorch/csprng#130, opacus#504): it cannot be installed with the torch fedcore runs on. So
fedcore keeps Opacus' mechanism and replaces its randomness, step by step:
- before every step, the generator of the Poisson batch sampling and the generator of the noise
  get a fresh state from the OS CSPRNG (`os.urandom`): on CPU all 19,968 bits of torch's
  MT19937 state, on CUDA a 64-bit Philox seed. Nothing links one step's randomness to another's,
  and no seed is ever chosen by the caller (`noise_generator` is refused);
- the noise is Opacus' floating-point-hardened draw (its `secure_mode` noise path: the sum of
  four Gaussians scaled by 1/2, Holohan et al. 2021, against the attacks of Jin et al. 2021).
What it does NOT claim: within one step the values are an MT19937 (or Philox) stream, which is
not a CSPRNG: someone who saw enough raw outputs of one step could predict the rest of that
step's. Nobody sees raw outputs (only the model after all steps, noise added to clipped
gradients and scaled); we know of no way to exploit this, but it is a weaker statement than
Opacus with torchcsprng (AES-CTR for every value).

Nothing else in fedcore imports opacus; everything privacy-related goes through here.
"""

from __future__ import annotations

import enum
import os
import secrets
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt
import torch
from opacus import PrivacyEngine
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.utils import get_noise_multiplier
from opacus.data_loader import DPDataLoader
from torch import nn
from torch.utils.data import DataLoader

from fedcore.training.proximal import proximal_gradient

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# (outputs, labels) -> the batch's mean loss: a module such as nn.CrossEntropyLoss() or a function.
Criterion = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_WRAPPER_PREFIX = "_module."
# torch's CPU generator state (CPUGeneratorImplStateLegacy): seed u64, left i32, seeded i32,
# next u64, 624 MT19937 words as u64, cached normals; 5056 bytes from torch 1.x to 2.13.
_MT_STATE_BYTES = 5056
_MT_WORDS = slice(24, 24 + 624 * 8)


class Mechanism(enum.Enum):
    """Which Opacus accountant turns a history into ε."""

    RDP = "rdp"
    PRV = "prv"


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """`steps` subsampled-Gaussian steps at one (noise multiplier, sample rate): Opacus' tuple."""

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        if not np.isfinite(self.noise_multiplier) or self.noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")


class StepLedger(Protocol):
    """Where `train_private` records its steps (`fedcore.dp.accountant.PrivacyAccountant`)."""

    @property
    def mechanism(self) -> Mechanism:
        """The accountant that turns the history into ε."""
        ...

    def record(self, entry: HistoryEntry) -> None:
        """Append `entry` to the history."""
        ...

    def epsilon(self, delta: float) -> float:
        """ε of the whole history at `delta`."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalTrainResult:
    """What one DP-SGD task produced.

    `state` has the plain parameter names of the un-wrapped model (CPU tensors); `epsilon` is
    the client's total ε after this task, at the `delta` the task was given.
    """

    state: dict[str, torch.Tensor]
    loss: float
    num_examples: int
    steps: int
    epsilon: float


def epsilon(history: Sequence[HistoryEntry], *, delta: float, mechanism: Mechanism) -> float:
    """ε spent by `history` at `delta`, as Opacus' accountant for `mechanism` computes it."""
    _check_delta(delta)
    entries = [e for e in history if e.steps > 0]
    if not entries:
        return 0.0
    accountant = _opacus_accountant(mechanism)
    accountant.history = [(e.noise_multiplier, e.sample_rate, e.steps) for e in entries]
    return float(accountant.get_epsilon(delta=delta))


def rdp_orders() -> list[float]:
    """The RDP orders Opacus' RDP accountant searches over."""
    return [float(a) for a in RDPAccountant.DEFAULT_ALPHAS]


def rdp_curve(entry: HistoryEntry, orders: Sequence[float]) -> npt.NDArray[np.float64]:
    """The RDP of `entry` at `orders` (Opacus' analysis); a composition's curves add up."""
    rdp = rdp_analysis.compute_rdp(
        q=entry.sample_rate, noise_multiplier=entry.noise_multiplier, steps=entry.steps,
        orders=list(orders),
    )
    return np.asarray(rdp, dtype=np.float64)


def epsilon_from_rdp(
    orders: Sequence[float], rdp: npt.NDArray[np.float64], *, delta: float
) -> float:
    """Convert an RDP curve to ε at `delta` with Opacus' conversion (Balle et al. 2020)."""
    _check_delta(delta)
    eps, _ = rdp_analysis.get_privacy_spent(orders=list(orders), rdp=list(rdp), delta=delta)
    return float(eps)


def noise_multiplier_for_target(
    *,
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    mechanism: Mechanism = Mechanism.RDP,
) -> float:
    """The smallest noise multiplier (Opacus' search, tolerance 0.01) with ε <= target after `steps`.

    For a client, `steps` = planned rounds × local steps per round (epochs × batches).
    """
    _check_delta(delta)
    if target_epsilon <= 0 or steps <= 0:
        raise ValueError("target_epsilon and steps must be positive")
    sigma = get_noise_multiplier(
        target_epsilon=target_epsilon,
        target_delta=delta,
        sample_rate=sample_rate,
        steps=steps,
        accountant=mechanism.value,
        epsilon_tolerance=0.01,
    )
    return float(sigma)


def plan_local_task(
    data_loader: DataLoader[tuple[torch.Tensor, ...]], *, epochs: int, noise_multiplier: float
) -> HistoryEntry:
    """The accountant entry `train_private` will add for this loader (before training)."""
    sample_rate = 1 / len(data_loader)
    return HistoryEntry(
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=epochs * int(1 / sample_rate),  # Opacus' DPDataLoader length
    )


def train_private(
    *,
    model: nn.Module,
    optimizer_factory: OptimizerFactory,
    data_loader: DataLoader[tuple[torch.Tensor, ...]],
    noise_multiplier: float,
    max_grad_norm: float,
    epochs: int,
    accountant: StepLedger,
    delta: float,
    device: str | torch.device = "cpu",
    criterion: Criterion | None = None,
    proximal_mu: float = 0.0,
    global_state: Mapping[str, torch.Tensor] | None = None,
    noise_generator: torch.Generator | None = None,
    secure_mode: bool = False,
) -> LocalTrainResult:
    """Train `model` in place with DP-SGD for `epochs`; record the steps in `accountant`.

    The batch size is the loader's (expected batch size under Poisson sampling; the loader's
    own generator, if any, drives the sampling). With `proximal_mu > 0` the FedProx term
    `mu/2 ||w - global_state||^2` is added to the objective. `noise_generator` makes the noise
    reproducible for tests; `secure_mode` draws the batches and the noise from fresh OS entropy
    every step with Opacus' hardened noise (see the module docstring for what that guarantees;
    excludes `noise_generator`). The steps taken are recorded even when training fails part-way.

    Raises:
        ValueError: a bad argument, or a model Opacus cannot make private (fix it first with
            `opacus.validators.ModuleValidator.fix`, e.g. BatchNorm -> GroupNorm).
    """
    _check_train_args(noise_multiplier, max_grad_norm, epochs, proximal_mu, global_state)
    if secure_mode and noise_generator is not None:
        raise ValueError("secure_mode draws its own randomness from the OS: drop noise_generator")
    criterion = criterion or nn.CrossEntropyLoss()
    if getattr(criterion, "reduction", "mean") != "mean":
        raise ValueError("criterion must average over the batch (reduction='mean'), as Opacus "
                         "is told; per-sample sums would mis-scale the noise")
    model.to(device)
    model.train()
    plain_names = list(model.state_dict())
    # checked before Opacus wraps the model: a refusal leaves no hooks on the caller's model
    anchors = {} if global_state is None else _anchors(model, global_state, device)
    engine = PrivacyEngine(accountant=accountant.mechanism.value)
    entropy = OsEntropy(device) if secure_mode else None
    wrapped, optimizer, private_loader = engine.make_private(
        module=model,
        optimizer=optimizer_factory(model.parameters()),
        data_loader=(data_loader if entropy is None
                     else DPDataLoader.from_data_loader(data_loader, generator=entropy.sampling)),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        poisson_sampling=entropy is None,  # else the loader above already samples (Poisson)
        noise_generator=noise_generator if entropy is None else entropy.noise,
    )
    if entropy is not None:
        wrapped.forbid_grad_accumulation()  # what poisson_sampling=True would have set
        optimizer.secure_mode = True  # Opacus' hardened noise (the sum of four Gaussians)
    try:
        loss, steps = _run_epochs(
            wrapped, optimizer, private_loader, epochs, device,
            criterion, proximal_mu, anchors, entropy,
        )
        state = _plain_state(wrapped, plain_names)
    finally:
        wrapped.cleanup()
        for n, s, k in engine.accountant.history:
            accountant.record(HistoryEntry(noise_multiplier=n, sample_rate=s, steps=k))
    return LocalTrainResult(
        state=state,
        loss=loss,
        num_examples=len(data_loader.dataset),  # type: ignore[arg-type]
        steps=steps,
        epsilon=accountant.epsilon(delta),
    )


class OsEntropy:
    """The two torch generators of a secure DP-SGD task, refilled from `os.urandom` each step.

    `sampling` (CPU) draws the Poisson batches, `noise` (on the training device) the Gaussian
    noise; `refresh()` gives both a state nobody chose or saw (module docstring: the claim).
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.sampling = torch.Generator()
        dev = torch.device(device)
        self.noise = self.sampling if dev.type == "cpu" else torch.Generator(device=dev)
        self.refresh()

    def refresh(self) -> None:
        """Give both generators a fresh state from the operating system's CSPRNG."""
        for gen in {id(g): g for g in (self.sampling, self.noise)}.values():
            refill_generator(gen)


def refill_generator(gen: torch.Generator) -> None:
    """Replace `gen`'s whole state with bits from `os.urandom` (CPU: 624 MT19937 words).

    Raises:
        RuntimeError: this torch build's CPU generator state has an unknown layout.
    """
    if gen.device.type != "cpu":
        gen.manual_seed(secrets.randbits(64))  # Philox: the seed is its whole key
        return
    state = bytearray(gen.get_state().numpy().tobytes())
    if len(state) != _MT_STATE_BYTES:
        raise RuntimeError(f"secure_mode: torch {torch.__version__} keeps its CPU generator "
                           f"state in {len(state)} bytes, not the {_MT_STATE_BYTES} of the "
                           "MT19937 layout fedcore refills; use secure_rng=False or torch <= 2.13")
    words = np.frombuffer(os.urandom(624 * 4), dtype="<u4").astype("<u8")
    state[_MT_WORDS] = words.tobytes()
    struct.pack_into("<iiQ", state, 8, 1, 1, 0)  # left=1: twist before the first output
    struct.pack_into("<i", state, 5040, 0)  # no cached double normal from the old state
    struct.pack_into("<?", state, 5052, False)  # no cached float normal either
    gen.set_state(torch.frombuffer(state, dtype=torch.uint8).clone())


def strip_wrapper_names(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop Opacus' `_module.` prefix from state-dict names (the exchanged names are plain)."""
    return {
        name.removeprefix(_WRAPPER_PREFIX): value.detach().cpu().clone()
        for name, value in state.items()
    }


def _run_epochs(
    wrapped: nn.Module,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[tuple[torch.Tensor, ...]],
    epochs: int,
    device: str | torch.device,
    criterion: Criterion,
    proximal_mu: float,
    anchors: dict[str, torch.Tensor],
    entropy: OsEntropy | None = None,
) -> tuple[float, int]:
    loss_sum, seen, steps = 0.0, 0, 0
    for _ in range(epochs):
        for features, labels in loader:
            features, labels = features.to(device), labels.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(wrapped(features), labels)
            loss.backward()  # type: ignore[no-untyped-call]
            if entropy is not None:
                entropy.refresh()  # this step's noise, and the next batch, from fresh entropy
            if optimizer.pre_step():  # type: ignore[attr-defined]
                _add_proximal_grad(wrapped, proximal_mu, anchors)
                optimizer.original_optimizer.step()  # type: ignore[attr-defined]
            steps += 1
            if len(labels) > 0:
                loss_sum += float(loss.detach()) * len(labels)
                seen += len(labels)
    return (loss_sum / seen if seen else float("nan")), steps


def _add_proximal_grad(
    wrapped: nn.Module, proximal_mu: float, anchors: dict[str, torch.Tensor]
) -> None:
    """Add FedProx's gradient to the privatised gradient: data-independent post-processing."""
    if proximal_mu <= 0:
        return
    with torch.no_grad():
        for name, param in wrapped.named_parameters():
            if param.grad is not None:
                anchor = anchors[name.removeprefix(_WRAPPER_PREFIX)]
                param.grad.add_(proximal_gradient(param, anchor, proximal_mu))


def _anchors(
    model: nn.Module,
    global_state: Mapping[str, torch.Tensor],
    device: str | torch.device,
) -> dict[str, torch.Tensor]:
    anchors = {}
    for name, _ in model.named_parameters():
        if name not in global_state:
            raise ValueError(f"global_state has no tensor {name!r}; pass the global model's")
        anchors[name] = global_state[name].detach().to(device)
    return anchors


def _plain_state(wrapped: nn.Module, plain_names: list[str]) -> dict[str, torch.Tensor]:
    state = strip_wrapper_names(wrapped.state_dict())
    if list(state) != plain_names:
        raise RuntimeError(f"exchanged names {list(state)} differ from the model's {plain_names}")
    return state


def _check_train_args(
    noise_multiplier: float,
    max_grad_norm: float,
    epochs: int,
    proximal_mu: float,
    global_state: Mapping[str, torch.Tensor] | None,
) -> None:
    if not np.isfinite(noise_multiplier) or noise_multiplier < 0:
        raise ValueError(f"noise_multiplier must be a finite number >= 0, got {noise_multiplier}")
    if not np.isfinite(max_grad_norm) or max_grad_norm <= 0:
        raise ValueError(f"max_grad_norm must be positive, got {max_grad_norm}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if proximal_mu < 0:
        raise ValueError(f"proximal_mu must be >= 0, got {proximal_mu}")
    if proximal_mu > 0 and global_state is None:
        raise ValueError("proximal_mu > 0 needs global_state, the weights to stay close to")


def _check_delta(delta: float) -> None:
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta}; 1/(10 * dataset size) is usual")


def _opacus_accountant(mechanism: Mechanism) -> RDPAccountant | PRVAccountant:
    match mechanism:
        case Mechanism.RDP:
            return RDPAccountant()
        case Mechanism.PRV:
            return PRVAccountant()
