"""Plots of a run's history (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedcore.compression.codec import UPLOAD_BYTES
from fedcore.engine.records import PrivacyMechanism

_LABELS = {"loss": "evaluation", "epsilon": "local DP-SGD (worst client)",
           "user_epsilon": "user-level DP-FedAvg", "distributed_epsilon": "distributed DP",
           "distributed_epsilon_approx": "distributed DP (approx.)"}


def plot_history(rounds: Sequence[dict[str, Any]], path: Path, *, title: str = "fedcore") -> Path:
    """Write a PNG with accuracy and loss per round, the ε of each DP mechanism the rounds
    report (local, user-level, distributed) in one panel, and the bytes uploaded per round
    when the rounds record them (`upload_bytes`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["round"] for r in rounds]
    panels = [("accuracy", "test accuracy"), ("loss", "loss")]
    spent = [m.value for m in PrivacyMechanism if any(r.get(m.value) is not None for r in rounds)]
    if spent:
        panels.append(("epsilon", "epsilon spent"))
    if any(r.get(UPLOAD_BYTES) is not None for r in rounds):
        panels.append((UPLOAD_BYTES, "bytes uploaded"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6))
    for ax, (key, label) in zip(axes, panels):
        for series in spent if key == "epsilon" else [key]:
            ys = [r.get(series) for r in rounds]
            ax.plot([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None],
                    marker="o", label=_LABELS.get(series, label))
        if key == "epsilon":
            ax.legend()
        if key == "loss":
            train = [r.get("train_loss") for r in rounds]
            ax.plot([x for x, y in zip(xs, train) if y is not None],
                    [y for y in train if y is not None], marker=".", label="training")
            ax.legend()
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
