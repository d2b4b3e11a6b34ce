"""Vectorised DP-SGD: many clients' private local training at once, with Opacus' semantics.

Each client trains exactly as `fedcore.dp.opacus.train_private` would train it alone (Opacus'
`DPDataLoader` with Poisson sampling and its `DPOptimizer`, then plain SGD):

- sample rate q = 1 / ceil(n / batch_size) and int(1 / q) steps per epoch; each step's batch
  is `torch.rand(n, generator=g) < q`, where g is the client's CPU generator seeded with its
  seed and drawn step after step, after one int64 draw at the start of each epoch (Opacus'
  sampler draws so from the loader's generator, after torch's DataLoader draws its base seed);
- the per-example gradients of the per-example loss are each clipped to L2 norm C, by the
  factor min(1, C / (norm + 1e-6)), and summed; Gaussian noise of standard deviation
  noise_multiplier * C is added to the sum, tensor by tensor in parameter order; the result
  is divided by Opacus' expected batch size int(n * q) (also when the batch is empty);
- the FedProx gradient mu (w - w_global) (`fedcore.training.proximal`, as in Opacus' path) is
  added after the noise (post-processing), then
  w -= learning_rate * grad.

Noise: by default one generator per chunk draws every client's noise in one call (the same
distribution as Opacus', another stream, and not the floating-point-hardened `secure_mode`
that deployment may use). `noise_generators` (one per client, drawn as Opacus draws from its
`noise_generator`) reproduces a deployed client's noise exactly, for tests.
The guarantee, and ε, are those of `fedcore.dp.opacus` for the same (noise, q, steps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from fedcore.sim.backends.sequential import (
    LocalData,
    LocalResult,
    PerExampleLoss,
    TrainJob,
    TrainSettings,
)
from fedcore.sim.backends.vmap import Tensors, pad_stack, plan_chunks, require_functional
from fedcore.training.proximal import proximal_gradient

CLIP_EPSILON = 1e-6  # Opacus' stabiliser in the clipping factor
DEFAULT_CHUNK_BYTES = 256 << 20  # per-example gradients of one chunk and step, at most
NOISE_SALT = 0x5EED0F0015E


@dataclass(frozen=True, slots=True, kw_only=True)
class DPSettings:
    """Sample-level DP-SGD of one task: Gaussian noise multiplier and clipping norm."""

    noise_multiplier: float
    max_grad_norm: float

    def __post_init__(self) -> None:
        if not math.isfinite(self.noise_multiplier) or self.noise_multiplier < 0:
            raise ValueError(f"noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")


def client_noise_generator(seed: int) -> torch.Generator:
    """The noise generator of a client with this training seed, when noise is per client."""
    return torch.Generator().manual_seed(seed ^ NOISE_SALT)


def poisson_plan(num_examples: int, batch_size: int) -> tuple[float, int, int]:
    """Opacus' (sample rate, steps per epoch, expected batch size) for a client's loader."""
    sample_rate = 1 / math.ceil(num_examples / batch_size)
    return sample_rate, int(1 / sample_rate), int(num_examples * sample_rate)


def train_vectorised_private(
    job: TrainJob,
    *,
    dp: DPSettings,
    device: str | torch.device = "cpu",
    noise_generators: Sequence[torch.Generator] | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[LocalResult]:
    """DP-SGD for every client (see the module docstring); one result per client, in chunks
    of similar sizes whose per-example gradients take about `chunk_bytes`.

    Raises:
        ValueError: a model with buffers, or not one noise generator per client.
    """
    require_functional(job.model)
    clients, seeds, settings = job.clients, job.seeds, job.settings
    if noise_generators is not None and len(noise_generators) != len(clients):
        raise ValueError(f"{len(clients)} clients but {len(noise_generators)} noise generators")
    dev = torch.device(device)
    start = {n: torch.as_tensor(np.asarray(v)).to(dev) for n, v in job.global_params.items()}
    sizes = np.array([len(y) for _, y in clients], dtype=np.int64)
    counts = np.asarray(job.client_epochs())
    example_bytes = sum(v.numel() * v.element_size() for v in start.values()) * 2
    chunk_size = max(1, chunk_bytes // (example_bytes * settings.batch_size))
    chunks = plan_chunks(sizes, batch_size=settings.batch_size, chunk_size=chunk_size)
    step = _make_private_step(job.model, job.loss_fn, dp, settings)
    std = dp.noise_multiplier * dp.max_grad_norm
    return (
        result
        for chunk in chunks
        for result in _train_chunk(
            step, start, [clients[i] for i in chunk], chunk,
            _ChunkRandomness(
                seeds=[int(seeds[i]) for i in chunk],
                epochs=counts[chunk],
                noise=_Noise(std, None if noise_generators is None
                             else [noise_generators[i] for i in chunk]),
            ),
            settings,
        )
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class _ChunkRandomness:
    seeds: list[int]
    epochs: npt.NDArray[np.int64]
    noise: _Noise


class _Noise:
    """Gaussian noise for a chunk's clients: per-client generators, or one shared one."""

    def __init__(self, std: float, own: Sequence[torch.Generator] | None) -> None:
        self.std, self.own = std, own
        self.shared: torch.Generator | None = None

    def seed_shared(self, seeds: Sequence[int]) -> None:
        """Seed the shared generator from the chunk's client seeds."""
        words = np.random.SeedSequence([s & 0xFFFFFFFF for s in seeds]).generate_state(2)
        self.shared = torch.Generator().manual_seed(int(words[0]) << 31 | int(words[1]) >> 1)

    def draw(self, like: Tensors, active: torch.Tensor) -> Tensors:
        """Noise shaped like `like` (clients first); zero for inactive clients."""
        out = {n: torch.zeros_like(v) for n, v in like.items()}
        if self.std == 0:  # Opacus draws nothing then
            return out
        if self.own is None:
            for n, v in like.items():
                noise = torch.normal(0.0, self.std, size=v.shape, generator=self.shared)
                out[n] = noise.to(v) * _expand(active, v)
            return out
        for i in torch.nonzero(active).flatten().tolist():
            for n, v in like.items():
                out[n][i] = torch.normal(
                    mean=0.0, std=self.std, size=v.shape[1:], generator=self.own[i]
                ).to(v)
        return out


def _train_chunk(
    step: _PrivateStep,
    start: Tensors,
    data: Sequence[LocalData],
    positions: npt.NDArray[np.int64],
    randomness: _ChunkRandomness,
    settings: TrainSettings,
) -> Iterator[LocalResult]:
    first = next(iter(start.values()))
    sizes = [len(y) for _, y in data]
    x, y = (torch.from_numpy(a).to(first.device) for a in pad_stack(data))
    x = x.to(first.dtype)
    masks, steps, expected = _poisson_masks(
        sizes, randomness.seeds, randomness.epochs, settings.batch_size
    )
    randomness.noise.seed_shared(randomness.seeds)
    params = {n: v.unsqueeze(0).repeat(len(data), *([1] * v.dim())) for n, v in start.items()}
    rows = torch.arange(len(data), device=first.device).unsqueeze(1)
    loss_sums = torch.zeros(len(data), dtype=torch.float64, device=first.device)
    visited = torch.zeros(len(data), dtype=torch.int64)
    for t in range(int(steps.max())):
        active = torch.from_numpy(t < steps)
        chosen = masks[:, t]
        count = chosen.sum(1)
        width = max(int(count.max()), 1)
        idx = torch.argsort((~chosen).to(torch.int8), dim=1, stable=True)[:, :width]
        valid = (torch.arange(width) < count.unsqueeze(1)).to(first.device, first.dtype)
        idx = idx.to(first.device)
        noise = randomness.noise.draw(params, active)
        scale = torch.from_numpy(np.where(t < steps, expected, 1)).to(first.device)
        params, sums = step(params, start, (x[rows, idx], y[rows, idx], valid), noise,
                            (scale, active.to(first.device)))
        loss_sums += sums.double()
        visited += count
    updates = {n: (v - start[n]).cpu().numpy() for n, v in params.items()}
    losses = (loss_sums.cpu() / visited.clamp(min=1)).numpy()
    for i, position in enumerate(positions):
        yield LocalResult(
            client=int(position),
            update={name: value[i] for name, value in updates.items()},
            num_examples=sizes[i],
            train_loss=float(losses[i]) if visited[i] else float("nan"),
        )


def _poisson_masks(
    sizes: Sequence[int], seeds: Sequence[int], epochs: npt.NDArray[np.int64], batch_size: int
) -> tuple[torch.Tensor, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(clients, max steps, max n) inclusion masks, each client's steps and expected batch."""
    plans = [poisson_plan(n, batch_size) for n in sizes]
    steps = np.array([k * plan[1] for k, plan in zip(epochs, plans)], dtype=np.int64)
    masks = torch.zeros((len(sizes), int(steps.max()), max(sizes)), dtype=torch.bool)
    gen = torch.Generator()
    for i, (n, seed, (rate, per_epoch, _)) in enumerate(zip(sizes, seeds, plans)):
        gen.manual_seed(seed)
        for epoch in range(int(epochs[i])):
            torch.empty((), dtype=torch.int64).random_(generator=gen)  # the loader's base seed
            rows = slice(epoch * per_epoch, (epoch + 1) * per_epoch)
            masks[i, rows, :n] = torch.rand(per_epoch, n, generator=gen) < rate
    return masks, steps, np.array([plan[2] for plan in plans], dtype=np.int64)


_PrivateStep = Callable[..., tuple[Tensors, torch.Tensor]]


def _make_private_step(
    model: nn.Module, loss_fn: PerExampleLoss, dp: DPSettings, settings: TrainSettings
) -> _PrivateStep:
    def example_loss(
        params: Tensors, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss = loss_fn(functional_call(model, params, (x.unsqueeze(0),)), y.unsqueeze(0))[0]
        return loss, loss.detach()

    per_client = vmap(vmap(grad(example_loss, has_aux=True), in_dims=(None, 0, 0)))
    clip, lr, mu = dp.max_grad_norm, settings.learning_rate, settings.proximal_mu

    def step(
        params: Tensors,
        start: Tensors,
        batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        noise: Tensors,
        scale_and_active: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[Tensors, torch.Tensor]:
        (x, y, valid), (scale, active) = batch, scale_and_active
        grads, losses = per_client(params, x, y)  # (clients, examples, *shape)
        squares = [g.flatten(2).pow(2).sum(-1) for g in grads.values()]
        norms = torch.stack(squares, dim=-1).sum(-1).sqrt()
        factor = (clip / (norms + CLIP_EPSILON)).clamp(max=1.0) * valid
        for name, value in params.items():
            summed = torch.einsum("ck,ck...->c...", factor, grads[name])
            update = (summed + noise[name]) / _expand(scale, summed)
            if mu:
                update = update + proximal_gradient(value, start[name], mu) * _expand(
                    active, value)
            value.sub_(update, alpha=lr)
        return params, (losses * valid).sum(-1)

    return step


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))
