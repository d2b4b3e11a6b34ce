"""A privacy accountant that outlives rounds and process restarts.

The history is Opacus' `(noise_multiplier, sample_rate, steps)` list with a JSON form (never
pickle). `fedcore.storage.accountant_file` keeps it in the client's state directory and
rewrites it on every `record` (the `on_record` hook), so a restarted client continues its
history instead of starting from zero and under-reporting ε. ε itself always comes from
`fedcore.dp.opacus`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from fedcore.dp.opacus import HistoryEntry, Mechanism, epsilon

_FORMAT_VERSION = 1


class PrivacyAccountant:
    """Opacus-compatible history of DP steps; `on_record` is called after every change."""

    def __init__(
        self,
        *,
        mechanism: Mechanism = Mechanism.RDP,
        history: Iterable[HistoryEntry] = (),
        on_record: Callable[[PrivacyAccountant], None] | None = None,
    ) -> None:
        self.mechanism = mechanism
        self.on_record = on_record
        self._history: list[HistoryEntry] = []
        for entry in history:
            _append_merged(self._history, entry)

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        """The steps so far, consecutive runs with equal parameters merged (as Opacus does)."""
        return tuple(self._history)

    @property
    def steps(self) -> int:
        """Total number of DP steps recorded."""
        return sum(entry.steps for entry in self._history)

    def record(self, entry: HistoryEntry) -> None:
        """Append `entry`, then call `on_record` (which persists a stored accountant)."""
        if entry.steps == 0:
            return
        _append_merged(self._history, entry)
        if self.on_record is not None:
            self.on_record(self)

    def epsilon(self, delta: float) -> float:
        """ε spent so far at `delta`."""
        return epsilon(self._history, delta=delta, mechanism=self.mechanism)

    def epsilon_after(self, entry: HistoryEntry, delta: float) -> float:
        """ε that recording `entry` would bring; this accountant is left unchanged."""
        would_be = list(self._history)
        _append_merged(would_be, entry)
        return epsilon(would_be, delta=delta, mechanism=self.mechanism)


def accountant_to_json(accountant: PrivacyAccountant) -> str:
    """The accountant's mechanism and history as a JSON document."""
    return json.dumps(
        {
            "version": _FORMAT_VERSION,
            "mechanism": accountant.mechanism.value,
            "history": [
                {"noise_multiplier": e.noise_multiplier, "sample_rate": e.sample_rate,
                 "steps": e.steps}
                for e in accountant.history
            ],
        },
        indent=1,
    )


def accountant_from_json(text: str, *, where: str = "") -> PrivacyAccountant:
    """Parse `accountant_to_json`'s output.

    Raises:
        ValueError: the document is not an accountant this version understands.
    """
    try:
        doc = json.loads(text)
        if doc["version"] != _FORMAT_VERSION:
            raise ValueError(f"unsupported version {doc['version']}")
        mechanism = Mechanism(doc["mechanism"])
        history = [_entry_from_json(item) for item in doc["history"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"unreadable privacy accountant{f' in {where}' if where else ''}: {err}; restore it from a backup — deleting it "
            "would reset the ε this client reports"
        ) from err
    return PrivacyAccountant(mechanism=mechanism, history=history)


def _entry_from_json(item: Any) -> HistoryEntry:
    steps = item["steps"]
    if not isinstance(steps, int) or isinstance(steps, bool):
        raise TypeError(f"steps must be an integer, got {steps!r}")
    return HistoryEntry(
        noise_multiplier=float(item["noise_multiplier"]),
        sample_rate=float(item["sample_rate"]),
        steps=steps,
    )


def _append_merged(history: list[HistoryEntry], entry: HistoryEntry) -> None:
    if entry.steps == 0:
        return
    last = history[-1] if history else None
    if (
        last is not None
        and last.noise_multiplier == entry.noise_multiplier
        and last.sample_rate == entry.sample_rate
    ):
        history[-1] = HistoryEntry(
            noise_multiplier=last.noise_multiplier,
            sample_rate=last.sample_rate,
            steps=last.steps + entry.steps,
        )
    else:
        history.append(entry)
