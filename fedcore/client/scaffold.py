"""SCAFFOLD's client side (Karimireddy et al. 2020, option II): corrected local steps and the
client's own control variate c_i, kept between rounds.

The task handler runs `corrected_fit` when the downloaded model carries control variates
(`fedcore.protocol.scaffold`): it loads c_i (zeros the first time), asks the app to train with
the constant correction `c - c_i` added to every gradient (`DriftCorrected.fit_corrected`),
then sets

    c_i+ = c_i - c + (x - y) / (K lr)

(K: the local steps actually taken, lr: the task's learning rate), stores c_i+ and returns the
model update y - x and the change c_i+ - c_i, which travels under the control variates' names.
c_i+ is stored as soon as it is computed (before the upload): a result that never reaches the
coordinator leaves c_i one step ahead of the server's c, which SCAFFOLD tolerates as it does
clients that drop out.

c_i is kept in float64, in the client's state directory (`BlobVariates` over a `StateDir`,
file `scaffold_control_variate`) or in the simulator's per-client state
(`fedcore.sim.scaffold`); without either it lives in memory for the process's lifetime.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from fedcore.client.app import ClientApp, ClientAppError, DeclineTask, FitResult
from fedcore.compression.codec import BlobStore, MemoryStore
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import TrainConfig
from fedcore.protocol.params import Array, Params
from fedcore.protocol.scaffold import control_name, split_control
from fedcore.protocol.specs import ModelSpec, TensorSpec, check_matches, spec_of
from fedcore.wire.tensor import decode, encode

log = logging.getLogger(__name__)

VARIATE_NAME = "scaffold_control_variate"
F64 = npt.NDArray[np.float64]
_F64 = np.dtype(np.float64)


@runtime_checkable
class DriftCorrected(Protocol):
    """An app that can train with SCAFFOLD's correction (`TorchApp` can)."""

    def fit_corrected(self, params: Params, config: TrainConfig,
                      correction: dict[str, F64]) -> FitResult:
        """Train as `fit` does, adding `correction[name]` to the gradient of each named tensor
        at every local step; `FitResult.local_steps` must say how many steps were taken."""
        ...


class VariateStore(Protocol):
    """Where a client's control variate c_i lives between rounds."""

    def load(self, spec: ModelSpec) -> dict[str, F64] | None:
        """The stored c_i if it has the layout `spec` (float64 tensors), else None."""
        ...

    def save(self, variate: dict[str, F64]) -> None:
        """Replace the stored c_i."""
        ...


@runtime_checkable
class HoldsVariates(Protocol):
    """An app that knows where its client's c_i lives (the simulator's replayed clients); the
    task handler uses it when it was given no store of its own."""

    @property
    def variate_store(self) -> VariateStore | None:
        """The client's control-variate store, or None."""
        ...


class BlobVariates:
    """c_i as raw float64 bytes in a `BlobStore` (a client's `StateDir`; memory by default).

    No header is stored: the layout comes from the model that is being trained, and a blob of
    another size (the federation changed its model) is ignored with a warning.
    """

    def __init__(self, store: BlobStore | None = None) -> None:
        self._store: BlobStore = store if store is not None else MemoryStore()

    def load(self, spec: ModelSpec) -> dict[str, F64] | None:
        """The stored c_i, or None when none (of this layout) was stored."""
        blob = self._store.read_bytes(VARIATE_NAME)
        if blob is None:
            return None
        try:
            tensors = decode(spec, blob)
        except WireError:
            log.warning("the stored SCAFFOLD control variate is for another model; "
                        "starting from zero")
            return None
        return {k: np.array(v, np.float64) for k, v in tensors.items()}

    def save(self, variate: dict[str, F64]) -> None:
        """Write c_i atomically (as the store writes)."""
        self._store.write_bytes(VARIATE_NAME, encode(variate))


def variate_spec(control: Params) -> ModelSpec:
    """The layout c_i is stored in: float64 tensors of the control variates' shapes."""
    return ModelSpec(tensors=tuple(
        TensorSpec(name=n, dtype=_F64, shape=tuple(int(d) for d in np.shape(v)))
        for n, v in control.items()))


@dataclass(frozen=True, slots=True)
class CorrectedFit:
    """What `corrected_fit` produced: the app's result (its `params` are the local model y)
    and `c_i+ - c_i` under the control variates' names."""

    fit: FitResult
    control_delta: dict[str, Array]


def corrected_fit(app: ClientApp, params: Params, config: TrainConfig,
                  store: VariateStore) -> CorrectedFit:
    """Run one SCAFFOLD local round of `app` from the downloaded `params` (model and c).

    Returns the local model y and `c_i+ - c_i` under each control variate's name (in the
    downloaded variate's dtype); stores c_i+.

    Raises:
        DeclineTask: the app cannot apply the correction, or the task asks for local DP-SGD
            (not combined with SCAFFOLD here), permanently.
        ClientAppError: the app returned parameters that do not match the model, or no steps.
    """
    if not isinstance(app, DriftCorrected):
        raise DeclineTask(f"{type(app).__name__} cannot run SCAFFOLD's corrected local steps "
                          "(it has no fit_corrected); use TorchApp or implement it",
                          permanent=True)
    if config.local_dp is not None:
        raise DeclineTask("SCAFFOLD with local DP-SGD is not supported", permanent=True)
    model, control = split_control(params)
    for name, value in control.items():
        if name not in model or np.shape(model[name]) != np.shape(value):
            raise ClientAppError(f"the model's control variate for {name!r} has no tensor of "
                                 "its shape: the coordinator sent an inconsistent model")
    spec = variate_spec(control)
    own = store.load(spec)
    c_i = own if own is not None else {n: np.zeros(np.shape(v)) for n, v in control.items()}
    c = {n: np.asarray(v, np.float64) for n, v in control.items()}
    correction = {n: c[n] - c_i[n] for n in control}
    fit = app.fit_corrected({k: np.array(v, copy=True) for k, v in model.items()}, config,
                            correction)
    y = {k: np.asarray(v) for k, v in fit.params.items()}
    try:
        check_matches(spec_of(y), spec_of(model))
    except WireError as err:
        raise ClientAppError(f"fit_corrected() returned parameters that do not match the "
                             f"model: {err}") from err
    if fit.local_steps < 1:
        raise ClientAppError("fit_corrected() must report local_steps >= 1 (SCAFFOLD divides "
                             "by the number of local steps)")
    scale = 1.0 / (fit.local_steps * config.learning_rate)
    c_new = {
        n: c_i[n] - c[n] + (np.asarray(model[n], np.float64) - np.asarray(y[n], np.float64))
        * scale
        for n in control
    }
    if not all(np.all(np.isfinite(v)) for v in c_new.values()):
        raise ClientAppError("the control variate is not finite after training (diverged?)")
    store.save(c_new)
    delta: dict[str, Array] = {
        control_name(n): (c_new[n] - c_i[n]).astype(np.asarray(control[n]).dtype)
        for n in control
    }
    return CorrectedFit(fit=fit, control_delta=delta)
