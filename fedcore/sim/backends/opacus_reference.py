"""Sequential DP-SGD through Opacus itself (`fedcore.dp.opacus.train_private`): the reference
that `fedcore.sim.backends.private` reproduces, and the DP path of the sequential backend.

Client i's Poisson batches come from a loader generator seeded with its seed (as in the
vectorised kernel) and its noise from `client_noise_generator(seed)`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import train_private
from fedcore.sim.backends.private import DPSettings, client_noise_generator
from fedcore.sim.backends.sequential import LocalData, LocalResult, TrainJob, TrainSettings

UNUSED_DELTA = 1e-5  # train_private reports ε of a throw-away accountant; the caller accounts


def train_with_opacus(
    job: TrainJob, *, dp: DPSettings, device: str | torch.device = "cpu"
) -> Iterator[LocalResult]:
    """Each client in turn with Opacus' DP-SGD from `job.global_params`; the model is not
    touched (the loss is `fedcore.dp.opacus.train_private`'s, not `job.loss_fn`)."""
    start = {n: torch.from_numpy(np.array(v)) for n, v in job.global_params.items()}
    return (
        _train_one(job.model, start, data, (int(seed), k), job.settings, dp, device, position)
        for position, (data, seed, k) in enumerate(
            zip(job.clients, job.seeds, job.client_epochs())
        )
    )


def _train_one(
    template: nn.Module,
    start: dict[str, torch.Tensor],
    data: LocalData,
    seed_and_epochs: tuple[int, int],
    settings: TrainSettings,
    dp: DPSettings,
    device: str | torch.device,
    position: int,
) -> LocalResult:
    (seed, epochs), (x, y) = seed_and_epochs, data
    model = copy.deepcopy(template)
    model.load_state_dict(start, strict=False)
    dtype = next(iter(start.values())).dtype
    dataset = TensorDataset(torch.as_tensor(x, dtype=dtype), torch.as_tensor(y, dtype=torch.int64))
    loader = DataLoader(dataset, batch_size=settings.batch_size,
                        generator=torch.Generator().manual_seed(seed))
    result = train_private(
        model=model,
        optimizer_factory=lambda ps: torch.optim.SGD(ps, lr=settings.learning_rate),
        data_loader=loader, noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm, epochs=epochs, accountant=PrivacyAccountant(),
        delta=UNUSED_DELTA, device=device, proximal_mu=settings.proximal_mu,
        global_state=start if settings.proximal_mu else None,
        noise_generator=client_noise_generator(seed),
    )
    return LocalResult(
        client=position,
        update={n: (result.state[n] - start[n]).numpy() for n in start},
        num_examples=len(y),
        train_loss=result.loss,
    )
