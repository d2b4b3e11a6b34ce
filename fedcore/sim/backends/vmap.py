"""Vectorised local training: many clients' parameters stacked and trained at once with torch.func.

Each client's data is padded to the largest in its chunk and masked, and a client with fewer
batches idles (an exactly zero step) while the others finish, so every client follows the
semantics of `fedcore.sim.backends.sequential` to floating-point tolerance: same batch order
from the same seed, same losses, same updates. Models must be functional: parameters only,
no buffers (use the sequential backend for batch norm and the like).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.func import functional_call, grad, vmap
from torch.nn.utils.rnn import pad_sequence

from fedcore.sim.backends.sequential import (
    LocalData,
    LocalResult,
    PerExampleLoss,
    TrainJob,
    TrainSettings,
    epoch_orders,
)
from fedcore.training.proximal import proximal_term

Tensors: TypeAlias = dict[str, torch.Tensor]
_StepFn = Callable[..., tuple[Tensors, torch.Tensor]]
DEFAULT_CHUNK_SIZE = 16_384
MAX_PADDING_FACTOR = 2


def train_vectorised(
    job: TrainJob, *, device: str | torch.device = "cpu", chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[LocalResult]:
    """Train all clients in vectorised chunks; yields one result per client, in chunk order.

    Clients are grouped by size (at most `chunk_size` per chunk, and no client padded to
    more than twice its number of batches), so results arrive out of input order: use
    `LocalResult.client`. `job.model` is only a template; its own parameters are not touched.
    A client with fewer epochs than the others idles with exact zero steps. Each chunk trains
    when its first result is consumed.

    Raises:
        ValueError: a model with buffers, or `chunk_size < 1`.
    """
    require_functional(job.model)
    if job.corrections is not None:
        raise ValueError("SCAFFOLD's corrected steps run on the sequential kernel "
                         "(train_sequential), not the vectorised one")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    dev = torch.device(device)
    settings, clients = job.settings, job.clients
    start = {n: torch.as_tensor(np.asarray(v)).to(dev) for n, v in job.global_params.items()}
    step = _make_step(job.model, job.loss_fn, settings.learning_rate, settings.proximal_mu)
    sizes = np.array([len(y) for _, y in clients], dtype=np.int64)
    chunks = plan_chunks(sizes, batch_size=settings.batch_size, chunk_size=chunk_size)
    counts = np.asarray(job.client_epochs())
    return (
        result
        for chunk in chunks
        for result in _train_chunk(
            step, start, [clients[i] for i in chunk], chunk, (job.seeds, counts[chunk]), settings
        )
    )


def require_functional(model: nn.Module) -> None:
    """Raise `ValueError` unless `model` has parameters only (no buffers), as vmap needs."""
    if any(True for _ in model.buffers()):
        raise ValueError("the vectorised backend needs a model without buffers; use sequential")


def plan_chunks(
    sizes: npt.NDArray[np.int64], *, batch_size: int, chunk_size: int
) -> list[npt.NDArray[np.int64]]:
    """Client positions grouped by size: ascending, bounded count, padding under 2x batches."""
    order = np.argsort(sizes, kind="stable")
    steps = -(-sizes[order] // batch_size)
    chunks: list[npt.NDArray[np.int64]] = []
    begin = 0
    while begin < len(order):
        limit = steps[begin] * MAX_PADDING_FACTOR
        end = min(begin + chunk_size, int(np.searchsorted(steps, limit, side="right")))
        chunks.append(order[begin:end])
        begin = end
    return chunks


def _make_step(model: nn.Module, loss_fn: PerExampleLoss, lr: float, mu: float) -> _StepFn:
    def client_loss(
        params: Tensors, start: Tensors, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        per_example = loss_fn(functional_call(model, params, (x,)), y) * mask
        count = mask.sum()
        loss = per_example.sum() / count.clamp(min=1.0)
        if mu:
            loss = loss + proximal_term(params, start, mu) * (count > 0).to(loss.dtype)
        return loss, per_example.sum().detach()

    batched_grad = vmap(grad(client_loss, has_aux=True), in_dims=(0, None, 0, 0, 0))

    def step(
        params: Tensors, start: Tensors, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor
    ) -> tuple[Tensors, torch.Tensor]:
        grads, loss_sums = batched_grad(params, start, x, y, mask)
        new = {name: value.sub_(grads[name], alpha=lr) for name, value in params.items()}
        return new, loss_sums

    return step


def _train_chunk(
    step: _StepFn,
    start: Tensors,
    data: Sequence[LocalData],
    positions: npt.NDArray[np.int64],
    seeds_and_epochs: tuple[Sequence[int], npt.NDArray[np.int64]],
    settings: TrainSettings,
) -> Iterator[LocalResult]:
    seeds, epochs = seeds_and_epochs
    dev = next(iter(start.values())).device
    sizes = [len(y) for _, y in data]
    x, y = (torch.from_numpy(a).to(dev) for a in pad_stack(data))
    x = x.to(next(iter(start.values())).dtype)
    orders, valid = _stacked_orders(sizes, [int(seeds[p]) for p in positions], epochs, settings)
    orders, valid = orders.to(dev), valid.to(dev, dtype=x.dtype)
    params = {n: v.unsqueeze(0).repeat(len(data), *([1] * v.dim())) for n, v in start.items()}
    rows = torch.arange(len(data), device=dev).unsqueeze(1)
    loss_sums = torch.zeros(len(data), dtype=torch.float64, device=dev)
    batch = settings.batch_size
    for epoch in range(int(epochs.max())):
        for begin in range(0, orders.shape[2], batch):
            idx = orders[:, epoch, begin : begin + batch]
            mask = valid[:, epoch, begin : begin + batch]
            params, sums = step(params, start, x[rows, idx], y[rows, idx], mask)
            loss_sums += sums.double()
    yield from _results(params, start, positions, sizes, loss_sums, epochs)


def _results(
    params: Tensors,
    start: Mapping[str, torch.Tensor],
    positions: npt.NDArray[np.int64],
    sizes: Sequence[int],
    loss_sums: torch.Tensor,
    epochs: npt.NDArray[np.int64],
) -> Iterator[LocalResult]:
    updates = {n: (v - start[n]).cpu().numpy() for n, v in params.items()}
    losses = loss_sums.cpu().numpy()
    for i, position in enumerate(positions):
        yield LocalResult(
            client=int(position),
            update={name: value[i] for name, value in updates.items()},
            num_examples=sizes[i],
            train_loss=float(losses[i]) / (sizes[i] * int(epochs[i])),
        )


def pad_stack(
    data: Sequence[LocalData],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Clients' features and labels stacked along a new first axis, zero-padded to the longest."""
    lengths = {len(y) for _, y in data}
    if len(lengths) == 1:  # the common case: no padding, one C-level copy
        return np.stack([x for x, _ in data]), np.stack([y for _, y in data]).astype(np.int64)
    first = np.asarray(data[0][0])
    x = np.zeros((len(data), max(lengths), *first.shape[1:]), dtype=first.dtype)
    y = np.zeros((len(data), max(lengths)), dtype=np.int64)
    for i, (features, labels) in enumerate(data):
        x[i, : len(labels)] = features
        y[i, : len(labels)] = labels
    return x, y


def _stacked_orders(
    sizes: Sequence[int],
    seeds: Sequence[int],
    client_epochs: npt.NDArray[np.int64],
    settings: TrainSettings,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(clients, epochs, padded length) example orders, and where they are real examples
    (nowhere in the epochs after a client's own last one)."""
    batch, epochs = settings.batch_size, int(client_epochs.max())
    padded = -(-max(sizes) // batch) * batch
    gen = torch.Generator()
    perms = [
        p
        for n, s in zip(sizes, seeds)
        for p in epoch_orders(n, epochs=epochs, seed=s, generator=gen)
    ]
    flat = pad_sequence(perms, batch_first=True)  # (clients * epochs, longest), zero-padded
    orders = nn.functional.pad(flat, (0, padded - flat.shape[1])).view(len(sizes), epochs, padded)
    lengths = torch.tensor(sizes).view(-1, 1, 1)
    valid = torch.arange(padded).expand(len(sizes), epochs, padded) < lengths
    active = torch.arange(epochs).view(1, -1, 1) < torch.from_numpy(client_epochs).view(-1, 1, 1)
    return orders, valid & active
