"""The client's task handler: turns a task and the global model into a result, without I/O.

The gRPC connection loop and the in-process simulator both call it, so a client behaves the
same in deployment and in simulation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fedcore.client.app import ClientApp, ClientAppError, DeclineTask
from fedcore.client.floor import PrivacyFloor, PrivatePlanner
from fedcore.client.scaffold import BlobVariates, HoldsVariates, VariateStore, corrected_fit
from fedcore.client.secure import (
    SecureRefusal,
    SecureSession,
    round_spec,
    secure_step,
    start_secure,
)
from fedcore.compression.codec import Compressor
from fedcore.dp.secure_random import secure_generator
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import ResultHeader, SecAggSetup, Task, TaskKind, TaskResult
from fedcore.protocol.params import Array, Metrics, Params
from fedcore.protocol.scaffold import has_control, is_control, split_control
from fedcore.protocol.specs import EMPTY_SPEC, ModelSpec, check_matches, spec_of
from fedcore.protocol.update import check_representable, update_of
from fedcore.secagg.roster import SecAggIdentity


class ModelMismatch(ClientAppError):
    """This client's model does not have the run's layout: it cannot take part in the run."""


class TaskHandler:
    """Runs one task against a `ClientApp` and packages the result for the coordinator.

    Args:
        app: what training and evaluation mean for this client.
        client_id: the id results are sent under.
        identity: signing key and roster for signed secure aggregation (None: unsigned).
        floor: the weakest privacy parameters accepted (`fedcore.client.floor`); TRAIN tasks
            below it are declined for good before training. None accepts whatever is sent.
        secure_rng: secure-aggregation rounding and noise draw from a CSPRNG
            (`fedcore.dp.secure_random`); an app that plans DP-SGD must then have its own
            `secure_rng` set too.
        compressor: compresses plain rounds' updates before they are sent
            (`fedcore.compression`); secure rounds always send the dense masked update.
        control_variates: where SCAFFOLD's client control variate is kept between rounds
            (`fedcore.client.scaffold`); None: where the app says (`HoldsVariates`, e.g. a
            simulated client), else in memory. Used only when the downloaded model carries
            control variates.

    Raises:
        ValueError: the identity is another client's; `floor.require_signed` without an
            identity; `secure_rng` with an app whose DP-SGD randomness is not secure.
    """

    def __init__(self, app: ClientApp, client_id: str, *,
                 identity: SecAggIdentity | None = None, floor: PrivacyFloor | None = None,
                 secure_rng: bool = False, compressor: Compressor | None = None,
                 control_variates: VariateStore | None = None) -> None:
        if identity is not None and identity.client_id != client_id:
            raise ValueError(f"the secure-aggregation identity is {identity.client_id!r}, "
                             f"not {client_id!r}")
        if floor is not None and floor.require_signed and identity is None:
            raise ValueError("the privacy floor requires signed rounds, which need this "
                             "client's secure-aggregation identity: pass secagg_identity")
        if secure_rng and isinstance(app, PrivatePlanner) and not getattr(app, "secure_rng", False):
            raise ValueError(f"secure_rng is set but the app's DP-SGD is not: construct "
                             f"{type(app).__name__}(..., secure_rng=True)")
        self.app = app
        self.client_id = client_id
        self.identity = identity
        self.floor = floor
        self.secure_rng = secure_rng
        self.compressor = compressor
        if control_variates is None and isinstance(app, HoldsVariates):
            control_variates = app.variate_store
        self.control_variates: VariateStore = (
            control_variates if control_variates is not None else BlobVariates())
        self._secure: tuple[str, SecureSession] | None = None  # (task id, session)
        self.trained_examples = 0  # of the last local training (a secure result hides it)
        self._matched: ModelSpec | None = None  # the run's layout, once checked against the app's

    def check_model(self, task: Task) -> None:
        """Fail fast when the run's model layout (`task.model_spec`) is not the app's own (its
        `get_parameters()`); checked once per layout. An app whose `get_parameters` raises is
        taken on trust.

        Raises:
            ModelMismatch: names the first difference.
        """
        spec = task.model_spec
        if has_control([t.name for t in spec.tensors]):  # SCAFFOLD's variates are not the app's
            spec = dataclasses.replace(
                spec, tensors=tuple(t for t in spec.tensors if not is_control(t.name)))
        if not spec.tensors or spec == self._matched:
            return
        try:
            own = spec_of({k: np.asarray(v) for k, v in self.app.get_parameters().items()})
        except Exception:  # noqa: BLE001 - e.g. an app that holds no parameters of its own
            return
        try:
            check_matches(own, spec)
        except WireError as err:
            raise ModelMismatch(f"this client's model does not match the run's ({task.task_id}"
                                f"): {err}; run a client built for this federation's model"
                                ) from err
        self._matched = spec

    def handle(self, task: Task, params: Params | None) -> TaskResult:
        """The result of `task`; `params` is the downloaded global model (None for INITIALIZE).

        Raises:
            ClientAppError: the app returned parameters that do not match the task's model.
        """
        below_floor = self.screen(task)
        if below_floor is not None:
            return below_floor
        try:
            match task.kind:
                case TaskKind.INITIALIZE:
                    return self._initialize(task)
                case TaskKind.TRAIN:
                    return self._train(task, _required(params, task))
                case TaskKind.EVALUATE:
                    return self._evaluate(task, _required(params, task))
                case TaskKind.SECAGG:
                    return self._secure_step(task)
        except DeclineTask as refusal:
            if not refusal.permanent:
                raise
            return self.decline(task, refusal.reason, permanent=True)

    def screen(self, task: Task) -> TaskResult | None:
        """A permanent decline when `task`'s stated privacy parameters fall below the floor
        (checked before the model is even downloaded); None when they meet it."""
        reason = self.floor.refusal(task) if self.floor is not None else ""
        return self.decline(task, reason, permanent=True) if reason else None

    def decline(self, task: Task, reason: str, *, permanent: bool = False) -> TaskResult:
        """A result that refuses `task` and says why; `permanent` refuses the rest of the run."""
        return TaskResult(
            header=ResultHeader(
                client_id=self.client_id, task_id=task.task_id, num_examples=0,
                declined_reason=reason or "declined", permanent=permanent,
            )
        )

    def _initialize(self, task: Task) -> TaskResult:
        params = {k: np.asarray(v) for k, v in self.app.get_parameters().items()}
        if not params:  # docs/protocol.md 4.2: decline, so the coordinator asks another client
            raise DeclineTask("this client has no initial parameters to offer")
        return self._result(task, num_examples=1, metrics={}, tensors=params)

    def _train(self, task: Task, params: Params) -> TaskResult:
        self._check_plan(task)
        if isinstance(task.secagg, SecAggSetup):  # refuse an unfit round before training
            try:
                round_spec(task.secagg, self.identity)
            except SecureRefusal as err:
                raise DeclineTask(str(err)) from err
        if has_control(params):  # SCAFFOLD: corrected steps, c_i's change sent along
            corrected = corrected_fit(self.app, params, task.train, self.control_variates)
            fit = corrected.fit
            new = {k: np.asarray(v) for k, v in fit.params.items()}
            delta = {name: update_of(new[name], params[name]) for name in new}
            delta.update(corrected.control_delta)
        else:
            fit = self.app.fit(_copy(params), task.train)
            new = {k: np.asarray(v) for k, v in fit.params.items()}
            try:
                check_matches(spec_of(new), task.model_spec)
            except WireError as err:
                raise ClientAppError(
                    f"fit() returned parameters that do not match the model: {err}") from err
            delta = {name: update_of(new[name], params[name]) for name in new}
        self.trained_examples = int(fit.num_examples)
        for name, value in delta.items():  # an integer change too large for its width
            try:
                check_representable(name, value, params[name])
            except WireError as err:
                raise DeclineTask(str(err)) from err
        if isinstance(task.secagg, SecAggSetup):  # the update is masked, never sent as is
            session, result = start_secure(
                task, self.client_id, delta, fit.num_examples, fit.metrics, self.identity,
                secure_generator() if self.secure_rng else None,
            )
            self._secure = (task.task_id, session)
            return result
        if self.compressor is not None:  # plain rounds only: secure ones mask the dense update
            delta = self.compressor.compress(delta)
        return self._result(task, num_examples=fit.num_examples, metrics=fit.metrics, tensors=delta)

    def _check_plan(self, task: Task) -> None:
        """Decline for good a DP-SGD task the app's accountant says falls below the floor."""
        if self.floor is None or not isinstance(self.app, PrivatePlanner):
            return
        try:
            plan = self.app.plan_local_dp(task.train)
        except ValueError as err:
            raise DeclineTask(f"cannot plan the task's local DP: {err}", permanent=True) from err
        reason = self.floor.plan_refusal(plan) if plan is not None else ""
        if reason:
            raise DeclineTask(reason, permanent=True)

    def _secure_step(self, task: Task) -> TaskResult:
        if self._secure is None or self._secure[0] != task.task_id:
            raise ClientAppError(
                f"no secure-aggregation state for {task.task_id} (the client restarted "
                "mid-round); it sits this round out"
            )
        session = self._secure[1]
        try:
            result = secure_step(session, task, self.client_id)
        except SecureRefusal as err:
            self._secure = None  # release nothing more in this round
            raise ClientAppError(str(err)) from err
        if session.finished:
            self._secure = None
        return result

    def _evaluate(self, task: Task, params: Params) -> TaskResult:
        model = split_control(params)[0] if has_control(params) else params
        ev = self.app.evaluate(_copy(model), task.train)
        metrics = {**ev.metrics, "loss": float(ev.loss)}
        return self._result(task, num_examples=ev.num_examples, metrics=metrics, tensors={})

    def _result(
        self, task: Task, *, num_examples: int, metrics: Metrics,
        tensors: dict[str, Array],
    ) -> TaskResult:
        if num_examples < 1:
            raise ClientAppError(f"num_examples must be >= 1, the app returned {num_examples}")
        clean = {str(k): float(v) for k, v in dict(metrics).items()}
        bad = [k for k, v in clean.items() if not math.isfinite(v)]
        if bad:
            raise ClientAppError(f"metrics {bad} are not finite")
        header = ResultHeader(
            client_id=self.client_id,
            task_id=task.task_id,
            num_examples=int(num_examples),
            metrics=clean,
            spec=spec_of(tensors) if tensors else EMPTY_SPEC,
        )
        return TaskResult(header=header, tensors=tensors)


def limit_train_time(task: Task, *, local_max_s: float, elapsed_s: float) -> Task | None:
    """`task` with `train.max_train_s` set to its tightest bound, or None when no time is left.

    The bounds are the coordinator's `max_train_s`, the client's own `local_max_s`, and the time
    left before the task's deadline (`time_left_s` minus the `elapsed_s` since it arrived);
    zero means "no bound" for the first two.
    """
    bounds = [b for b in (task.train.max_train_s, local_max_s) if b > 0]
    if task.time_left_s > 0:
        left = task.time_left_s - elapsed_s
        if left <= 0:
            return None
        bounds.append(left)
    if not bounds:
        return task
    train = dataclasses.replace(task.train, max_train_s=min(bounds))
    return dataclasses.replace(task, train=train)


def _required(params: Params | None, task: Task) -> Params:
    if params is None:
        raise ValueError(f"task {task.task_id} ({task.kind.value}) needs the global model")
    return params


def _copy(params: Params) -> dict[str, Array]:
    return {k: np.array(v, copy=True) for k, v in params.items()}
