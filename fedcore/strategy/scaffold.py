"""SCAFFOLD (Karimireddy et al. 2020, "Stochastic Controlled Averaging for Federated Learning").

Clients correct every local step with control variates, so that heterogeneous clients stop
drifting towards their own optima: with server variate c and its own c_i, client i runs K
steps of

    y <- y - lr (g_i(y) - c_i + c)

from the global model x, then (the paper's option II)

    c_i+ = c_i - c + (x - y) / (K lr)

and sends Δy_i = y - x and Δc_i = c_i+ - c_i. The server steps

    x <- x + η_g mean_i Δy_i,        c <- c + (|S| / N) mean_i Δc_i

with |S| the results of the round and N the population (`num_clients`).

How it runs here (`fedcore.protocol.scaffold`): c is part of the global model, as extra tensors
`scaffold.c/<name>`, so it is downloaded with the model, checkpointed with it and restored by
`--resume` without any strategy state; clients return Δc_i under the same names, so the
variates are aggregated by the round's ordinary aggregator (plain, secure aggregation,
compression). Start a run from `with_control_variate(params)`. The means are FedAvg's
example-weighted means (the paper's uniform means when clients hold equal amounts of data).
The client side is `fedcore.client.scaffold` (the task handler runs it; c_i is kept in the
client's state directory, or the simulator's per-client state).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.aggregate.mean import WeightedMean
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Array, Params
from fedcore.protocol.scaffold import control_name, has_control, split_control
from fedcore.protocol.specs import ModelSpec, TensorSpec
from fedcore.protocol.update import apply_mean


def with_control_variate(params: Params, names: Iterable[str] | None = None) -> dict[str, Array]:
    """`params` plus a zero server control variate for each of `names` (default: every
    floating-point tensor): a SCAFFOLD run's initial model.

    Pass only the trained parameters' names for a model with buffers (batch-norm statistics),
    which local SGD does not step.

    Raises:
        ValueError: `params` already carries control variates, or a name is not a float tensor.
    """
    if has_control(params):
        raise ValueError("the parameters already carry SCAFFOLD control variates")
    chosen = ([n for n, v in params.items() if np.issubdtype(np.asarray(v).dtype, np.floating)]
              if names is None else list(names))
    for name in chosen:
        if name not in params or not np.issubdtype(np.asarray(params[name]).dtype, np.floating):
            raise ValueError(f"{name!r} is not a floating-point tensor of the model; SCAFFOLD "
                             "controls float parameters only")
    out = {k: np.asarray(v) for k, v in params.items()}
    out.update({control_name(n): np.zeros_like(np.asarray(params[n])) for n in chosen})
    return out


def with_control_spec(spec: ModelSpec) -> ModelSpec:
    """`spec` plus a control variate for each floating-point tensor, as `with_control_variate`
    adds them (unchanged when it already has control variates)."""
    if has_control([t.name for t in spec.tensors]):
        return spec
    extra = tuple(TensorSpec(name=control_name(t.name), dtype=t.dtype, shape=t.shape)
                  for t in spec.tensors if np.issubdtype(t.dtype, np.floating))
    return ModelSpec(tensors=spec.tensors + extra)


class Scaffold:
    """SCAFFOLD with option II control variates; clients train as under FedAvg otherwise.

    Args:
        num_clients: N, how many clients the run has (the server variate moves by |S|/N of
            the mean change each round).
        local_epochs, batch_size, learning_rate: the clients' local SGD (lr is the paper's η_l).
        server_lr: η_g, the server's step on the mean model update.
    """

    def __init__(self, *, num_clients: int, local_epochs: int = 1, batch_size: int = 32,
                 learning_rate: float = 0.01, server_lr: float = 1.0) -> None:
        if num_clients < 1:
            raise ValueError(f"num_clients must be >= 1, got {num_clients}")
        if not server_lr > 0:
            raise ValueError(f"server_lr must be > 0, got {server_lr}")
        self.num_clients = num_clients
        self.server_lr = float(server_lr)
        self._train = TrainConfig(local_epochs=local_epochs, batch_size=batch_size,
                                  learning_rate=learning_rate)

    def train_config(self, round_number: int) -> TrainConfig:
        """The same local settings every round."""
        return self._train

    def aggregator(self, round_number: int) -> Aggregator:
        """A streaming weighted mean over model updates and control-variate changes alike."""
        return WeightedMean()

    def apply(self, params: Params, result: AggregateResult) -> dict[str, Array]:
        """`x + η_g mean Δy` for model tensors, `c + (|S|/N) mean Δc` for control variates.

        Raises:
            ValueError: the model carries no control variate (it was not started from
                `with_control_variate`), or the aggregate does not match it (nothing changes).
        """
        model, control = split_control(params)
        if not control:
            raise ValueError("the global model carries no SCAFFOLD control variate: start the "
                             "run from fedcore.strategy.scaffold.with_control_variate(params)")
        for name, value in params.items():
            if name not in result.update or np.shape(result.update[name]) != np.shape(value):
                raise ValueError(f"the aggregate has no tensor {name!r} of shape "
                                 f"{np.shape(value)}; it must match the model")
        for name, c in control.items():
            if name not in model or np.shape(model[name]) != np.shape(c):
                raise ValueError(f"control variate of {name!r} has no model tensor of its shape")
        fraction = min(result.count / self.num_clients, 1.0)
        out: dict[str, Array] = {}
        for name, value in params.items():
            scale = fraction if name not in model else self.server_lr
            out[name] = apply_mean(value, result.update[name], scale)
        return out
