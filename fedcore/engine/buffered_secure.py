"""FedBuff with secure aggregation: each buffer of K results is one secure-aggregation group.

Plain FedBuff (`fedcore.engine.buffered`) folds every result into the buffer as it arrives,
weighted by that result's own staleness. Under secure aggregation the coordinator never sees a
result on its own, so the buffer has to be decided before anyone trains:

1. A client that asks for work while a slot is free joins the group being formed (it is told
   to wait). When K clients have joined, the group opens on the model version of that moment:
   a `fedcore.engine.secure_round.SecureRound` among exactly those K, with its own task id,
   graph seed and deadline (`task_timeout_s`, training and every protocol phase included).
2. Its members train from that version and run the secure-aggregation protocol as in a
   synchronous secure round (the client needs nothing new: each step is a task of the group's
   id). Several groups run at once, up to `concurrency` clients in all, each at its own pace.
3. When a group's protocol finishes, its unmasked sum is one buffer. All its results started
   from the same version v, so they share one staleness τ = (version now) - v, and the server
   steps on Δ = s(τ) · (their example-weighted mean) · (survivors / K), which is FedBuff's
   Σ_k s(τ_k) Δ_k / K with equal τ_k (and example weights, which a secure sum carries in its
   last coordinate). A group that aborts (fewer than t survivors in some phase, or its deadline
   passed) changes nothing; a group staler than `max_staleness` is refused whole.

What it costs, against plain FedBuff: a result can no longer be folded the moment it arrives.
A group waits for K clients to join, then for its slowest member (or its key phase deadline),
then for three more message exchanges; staleness is per group, not per result; and each
member does the protocol's O(K) key agreements (O(log K) with SecAgg+). docs/algorithms.md
has the figures. Distributed DP over buffers is not offered: its accounting is per round.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fedcore.engine.buffered import BufferedConfig, BufferedEngine, Outcome, staleness_weight
from fedcore.engine.collect import RoundFailed
from fedcore.engine.config import SecureAggregationConfig
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.secure_round import SecureRound
from fedcore.protocol.errors import WireError
from fedcore.protocol.messages import ResultHeader, Task, TaskReply, TaskResult, Wait
from fedcore.protocol.params import Array, Params
from fedcore.protocol.specs import EMPTY_SPEC, ModelSpec, check_matches, spec_of
from fedcore.strategy.base import Strategy

GROUP_PREFIX = "sbuf-"


@dataclass(slots=True)
class _Group:
    """One secure-aggregation group: the buffer of the clients it was formed from."""

    task_id: str
    version: int
    members: frozenset[str]
    protocol: SecureRound
    deadline: float
    gone: set[str] = field(default_factory=set)


class SecureBufferedEngine(BufferedEngine):
    """FedBuff whose buffers are secure-aggregation groups of `config.buffer_size` clients.

    Args:
        config: buffer size K (the group size), concurrency (clients in groups at once, plus
            those waiting for a group to fill), length of the run, staleness rule.
        strategy: each task's `train_config` and the server step (`apply`).
        initial_params: version 0 of the model.
        secure: the secure-aggregation settings every group uses (`distributed_dp` must be None).
        random_bytes: the source of each group's graph seed (the OS's by default).

    Raises:
        ValueError: K < 2 (a sum of one update is that update), K above `secure.max_clients`,
            or distributed DP asked for.
    """

    def __init__(self, config: BufferedConfig, strategy: Strategy, initial_params: Params,
                 secure: SecureAggregationConfig, *,
                 random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        if config.buffer_size < 2:
            raise ValueError("secure buffers need buffer_size >= 2: the sum of one update is "
                             "that update")
        if config.buffer_size > secure.max_clients:
            raise ValueError(f"buffer_size ({config.buffer_size}) is above the secure "
                             f"aggregation's max_clients ({secure.max_clients}): raise "
                             "[secagg] max_clients or lower the buffer size")
        if secure.distributed_dp is not None:
            raise ValueError("distributed DP over secure buffers is not supported (its "
                             "privacy accounting is per synchronous round): drop [secagg.dp] "
                             "or use rounds")
        super().__init__(config, strategy, initial_params)
        self.secure = secure
        self.groups_failed = 0
        self.last_failure = ""
        self._random_bytes = random_bytes
        self._forming: list[str] = []
        self._groups: dict[str, _Group] = {}
        self._group_of: dict[str, str] = {}
        self._clock = 0.0

    # ----------------------------------------------------------------- queries
    @property
    def outstanding(self) -> int:
        """Clients holding a slot: in an open group (not gone) or waiting for one to fill."""
        return len(self._forming) + sum(len(g.members) - len(g.gone)
                                        for g in self._groups.values())

    @property
    def forming(self) -> tuple[str, ...]:
        """The clients waiting for the next group to fill, in order of joining."""
        return tuple(self._forming)

    @property
    def open_groups(self) -> int:
        """Groups whose protocol is running."""
        return len(self._groups)

    @property
    def activity(self) -> tuple[object, ...]:
        """Changes whenever a waiting client may have a new step (drivers wake polls on it)."""
        return super().activity + (len(self._forming),) + tuple(
            (g.task_id, g.protocol.progress()) for g in self._groups.values())

    def clients_out(self) -> set[str]:
        """Clients in an open group (not gone), waiting for one, or evaluating."""
        return super().clients_out() | set(self._forming) | {
            c for g in self._groups.values() for c in g.members - g.gone}

    def members_of(self, task_id: str) -> frozenset[str]:
        """The clients group `task_id` was formed from (empty when no such group is open)."""
        group = self._groups.get(task_id)
        return group.members if group is not None else frozenset()

    def is_out(self, task_id: str) -> bool:
        """Whether group (or evaluation task) `task_id` is open."""
        return task_id in self._groups or super().is_out(task_id)

    def next_deadline(self) -> float | None:
        """The earliest group, protocol-phase or evaluation deadline."""
        deadlines = [g.deadline for g in self._groups.values()]
        deadlines += [d for g in self._groups.values()
                      if (d := g.protocol.inner_deadline()) is not None]
        plain = super().next_deadline()
        return min(deadlines + ([] if plain is None else [plain]), default=None)

    def version_of(self, client_id: str, task_id: str) -> int:
        """The version group `task_id` trains from (or evaluation task `task_id` evaluates),
        if it is `client_id`'s."""
        if task_id in self._out:
            return super().version_of(client_id, task_id)
        return self._member_group(client_id, task_id).version

    def model_for(self, task_id: str) -> Params:
        """The model version group `task_id` trains from (read-only use)."""
        if task_id in self._out:
            return super().model_for(task_id)
        group = self._groups.get(task_id)
        if group is None:
            raise EngineError(Reason.NOT_ASSIGNED, f"group {task_id} is not open")
        return self._models[group.version]

    def expected_spec(self, header: ResultHeader) -> ModelSpec:
        """The payload layout of a member's protocol message (none for a decline)."""
        if header.task_id in self._out:
            return super().expected_spec(header)
        group = self._member_group(header.client_id, header.task_id)
        if header.declined_reason:
            return EMPTY_SPEC
        return group.protocol.expected_spec(header.task_id, header)

    # ----------------------------------------------------------------- messages
    def _reply_in_progress(self, client_id: str, now: float) -> TaskReply | None:
        """A member's next protocol step (train, then the secure-aggregation messages), or
        `Wait` while its group is being formed; clients outside a group evaluate while an
        evaluation wants them, else join the group being formed (`_start_training`)."""
        task_id = self._group_of.get(client_id)
        if task_id is not None:
            return self._step_for(client_id, self._groups[task_id], now)
        return self._forming_wait() if client_id in self._forming else None

    def _start_training(self, client_id: str, now: float) -> TaskReply:
        """A slot is free: `client_id` joins the group being formed, which opens when full."""
        self._forming.append(client_id)
        if len(self._forming) >= self.config.buffer_size:
            return self._step_for(client_id, self._open_group(now), now)
        return self._forming_wait()

    def _forming_wait(self) -> Wait:
        missing = self.config.buffer_size - len(self._forming)
        return Wait(retry_after_s=self.config.retry_after_s,
                    reason=f"waiting for {missing} more client(s) to form a secure-aggregation "
                    "group")

    def release(self, client_id: str) -> None:
        """The client left: out of the forming group, dropped from its group's protocol, or
        its evaluation task dropped."""
        super().release(client_id)
        if client_id in self._forming:
            self._forming.remove(client_id)
            return
        task_id = self._group_of.pop(client_id, None)
        if task_id is not None:
            group = self._groups[task_id]
            group.gone.add(client_id)
            group.protocol.drop(client_id, self._clock)
            self._settle(group, self._clock)

    def submit(self, result: TaskResult, *, now: float) -> Outcome:
        """Take a member's protocol message (a decline drops it from its group's protocol).

        Returns APPLIED when the group's protocol finished and the model moved, FAILED when it
        aborted, STALE when it finished too stale, else BUFFERED.

        Raises:
            EngineError: LATE or NOT_ASSIGNED (no such group open, or not the client's),
                INVALID (a message the protocol refuses, a payload of the wrong layout); the
                engine's state is unchanged.
        """
        header = result.header
        if header.task_id in self._out:  # an evaluation task
            return super().submit(result, now=now)
        self.tick(now)
        if self.trained and header.task_id.startswith(GROUP_PREFIX):
            return Outcome.AFTER_END
        group = self._member_group(header.client_id, header.task_id)
        if header.declined_reason:
            self.declined += 1
            group.gone.add(header.client_id)
            self._group_of.pop(header.client_id, None)
            group.protocol.drop(header.client_id, now)
            return self._settle(group, now) or Outcome.DECLINED
        try:
            check_matches(spec_of(result.tensors),
                          group.protocol.expected_spec(header.task_id, header))
        except WireError as err:
            raise EngineError(Reason.INVALID, f"result of {header.task_id}: {err}") from err
        group.protocol.accept(header.client_id, result, now)
        return self._settle(group, now) or Outcome.BUFFERED

    def tick(self, now: float) -> None:
        """Close protocol phases, groups and evaluations whose deadlines passed."""
        self._clock = max(self._clock, now)
        super().tick(now)
        for group in list(self._groups.values()):
            if group.task_id in self._groups:  # a step that ends the run closes every group
                group.protocol.on_time(now)
                self._settle(group, now)

    # ----------------------------------------------------------------- internals
    def _open_group(self, now: float) -> _Group:
        self._issued += 1
        task_id = f"{GROUP_PREFIX}{self._issued}"
        members, self._forming = self._forming, []
        group = _Group(
            task_id=task_id, version=self.version, members=frozenset(members),
            protocol=SecureRound(self.secure, selected=members, model_spec=self.spec,
                                 round_id=self._issued, graph_seed=self._random_bytes(32),
                                 now=now),
            deadline=now + self.config.task_timeout_s)
        self._groups[task_id] = group
        self._group_of.update((c, task_id) for c in members)
        return group

    def _step_for(self, client_id: str, group: _Group, now: float) -> TaskReply:
        step = None if client_id in group.gone else group.protocol.next_step(client_id)
        if step is None:
            return Wait(retry_after_s=self.config.retry_after_s,
                        reason=f"waiting for the other members of {group.task_id}")
        return Task(round=group.version + 1, task_id=group.task_id, kind=step.kind,
                    train=self.strategy.train_config(group.version + 1),
                    time_left_s=max(0.0, group.deadline - now), model_spec=self.spec,
                    secagg=step.secagg)

    def _member_group(self, client_id: str, task_id: str) -> _Group:
        group = self._groups.get(task_id)
        if group is None:
            raise EngineError(Reason.LATE, f"{task_id} is no longer open (finished, aborted, "
                              "or the run ended): ask for a new task")
        if client_id not in group.members:
            raise EngineError(Reason.NOT_ASSIGNED, f"{client_id!r} is not a member of {task_id}")
        if client_id in group.gone:
            raise EngineError(Reason.LATE, f"{client_id!r} left {task_id} (it declined or "
                              "left): ask for a new task")
        return group

    def _settle(self, group: _Group, now: float) -> Outcome | None:
        """Close the group if its protocol finished or its deadline passed; the outcome then."""
        if not group.protocol.finished and now < group.deadline:
            return None
        self._close(group)
        try:
            result = group.protocol.aggregate()
        except RoundFailed as err:
            self.groups_failed += 1
            self.last_failure = f"{group.task_id}: {err}"
            return Outcome.FAILED
        staleness = self.version - group.version
        if self.config.max_staleness and staleness > self.config.max_staleness:
            self.stale_refused += result.count
            return Outcome.STALE
        weight = staleness_weight(staleness, self.config.staleness_exponent) * result.count
        scale = weight / self.config.buffer_size
        update: dict[str, Array] = {
            k: np.asarray(v, np.float64) * scale for k, v in result.update.items()}
        self._advance(update, (staleness,) * result.count, now, total_weight=weight,
                      measurements={**result.measurements, "staleness_weight": weight})
        return Outcome.APPLIED

    def _close(self, group: _Group) -> None:
        del self._groups[group.task_id]
        for client_id in group.members:
            if self._group_of.get(client_id) == group.task_id:
                del self._group_of[client_id]
        self._release_models()

    def _drop_outstanding(self) -> None:
        super()._drop_outstanding()
        self._forming.clear()
        self._groups.clear()
        self._group_of.clear()

    def _versions_in_use(self) -> set[int]:
        return super()._versions_in_use() | {g.version for g in self._groups.values()}
