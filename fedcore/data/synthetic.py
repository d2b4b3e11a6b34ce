"""FedProx Synthetic(alpha, beta) (Li et al. 2020, section 5.1 and their generator script).

Device k draws u_k ~ N(0, alpha), B_k ~ N(0, beta); W_k (60x10) and b_k (10) have entries
~ N(u_k, 1); v_k has entries ~ N(B_k, 1); x ~ N(v_k, diag(j^-1.2)), y = argmax(softmax(x W_k + b_k)).
As in the authors' code, alpha and beta are standard deviations (identical for (1, 1)), and
device sizes are int(lognormal(4, 2)) + 50.

Each device is derived from (seed, client index) alone, so any one of a population of
100,000 virtual devices is generated on demand without generating the others.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

NUM_FEATURES = 60
NUM_CLASSES = 10
_FEATURE_STD = np.power(np.arange(1, NUM_FEATURES + 1, dtype=np.float64), -1.2 / 2)

ClientData = tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]


def synthetic_client(
    alpha: float, beta: float, client: int, *, seed: int, samples_per_client: int | None = None
) -> ClientData:
    """Device `client`'s features (n, 60) float32 and labels (n,) int64.

    `samples_per_client=None` draws the size from the lognormal power law; an int fixes it.

    Raises:
        ValueError: negative alpha, beta or client index, or a non-positive size.
    """
    if alpha < 0 or beta < 0:
        raise ValueError(f"alpha and beta must be non-negative, got {alpha}, {beta}")
    if client < 0 or seed < 0:
        raise ValueError(f"client index and seed must be non-negative, got {client}, {seed}")
    if samples_per_client is not None and samples_per_client < 1:
        raise ValueError(f"samples_per_client must be positive, got {samples_per_client}")
    rng = np.random.default_rng([seed, client])
    u = rng.normal(0.0, alpha)
    b_mean = rng.normal(0.0, beta)
    n = samples_per_client or int(rng.lognormal(4.0, 2.0)) + 50
    weights = rng.normal(u, 1.0, (NUM_FEATURES, NUM_CLASSES))
    bias = rng.normal(u, 1.0, NUM_CLASSES)
    v = rng.normal(b_mean, 1.0, NUM_FEATURES)
    x = v + rng.standard_normal((n, NUM_FEATURES)) * _FEATURE_STD
    y = np.argmax(x @ weights + bias, axis=1)  # argmax of softmax == argmax of logits
    return x.astype(np.float32), y.astype(np.int64)


def synthetic_federated(
    alpha: float,
    beta: float,
    num_clients: int,
    *,
    seed: int,
    samples_per_client: int | None = None,
) -> list[ClientData]:
    """Devices 0..num_clients-1 of Synthetic(alpha, beta); see `synthetic_client`."""
    if num_clients < 1:
        raise ValueError(f"num_clients must be at least 1, got {num_clients}")
    return [
        synthetic_client(alpha, beta, k, seed=seed, samples_per_client=samples_per_client)
        for k in range(num_clients)
    ]
