"""A command-line federated client that trains logistic regression on a CSV file of its own.

NumPy only (no torch). The CSV has a header row, numeric feature columns and a 0/1 label column
(the last one unless --label says otherwise).

    python clients/csv_client.py --write-example site1.csv --seed 1       # make a demo file
    python clients/csv_client.py localhost:8080 site1.csv --state-dir ~/.fl/site1

It prints one JSON line when the run ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from fedcore.client import (
    EvalResult,
    FitResult,
    FunctionalApp,
    TrainConfig,
    run_client,
)

Params = dict[str, np.ndarray]


class LogisticRegression:
    """Binary logistic regression trained with minibatch SGD (FedProx term when mu > 0)."""

    def __init__(self, x: np.ndarray, y: np.ndarray, *, seed: int = 0) -> None:
        self.x = x.astype(np.float32)
        self.y = y.astype(np.float32)
        self.rng = np.random.default_rng(seed)

    def initial(self) -> Params:
        return {"w": np.zeros(self.x.shape[1], np.float32), "b": np.zeros(1, np.float32)}

    def fit(self, params: Params, config: TrainConfig) -> FitResult:
        w, b = params["w"].copy(), params["b"].copy()
        w0, b0 = params["w"], params["b"]
        deadline = time.monotonic() + config.max_train_s if config.max_train_s else None
        for _ in range(config.local_epochs):
            order = self.rng.permutation(len(self.y))
            for start in range(0, len(order), config.batch_size):
                idx = order[start : start + config.batch_size]
                err = _sigmoid(self.x[idx] @ w + b) - self.y[idx]
                grad_w = self.x[idx].T @ err / len(idx) + config.proximal_mu * (w - w0)
                grad_b = err.mean(keepdims=True) + config.proximal_mu * (b - b0)
                w -= np.float32(config.learning_rate) * grad_w.astype(np.float32)
                b -= np.float32(config.learning_rate) * grad_b.astype(np.float32)
                if deadline is not None and time.monotonic() > deadline:
                    break  # the SDK's time limit: report what we have
        loss, _ = self._loss_and_accuracy(w, b)
        return FitResult(params={"w": w, "b": b}, num_examples=len(self.y), metrics={"loss": loss})

    def evaluate(self, params: Params, config: TrainConfig) -> EvalResult:
        loss, accuracy = self._loss_and_accuracy(params["w"], params["b"])
        return EvalResult(loss=loss, num_examples=len(self.y), metrics={"accuracy": accuracy})

    def app(self) -> FunctionalApp:
        return FunctionalApp(get_parameters=self.initial, fit=self.fit, evaluate=self.evaluate)

    def _loss_and_accuracy(self, w: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        p = np.clip(_sigmoid(self.x @ w + b), 1e-7, 1 - 1e-7)
        loss = -np.mean(self.y * np.log(p) + (1 - self.y) * np.log(1 - p))
        return float(loss), float(np.mean((p > 0.5) == (self.y > 0.5)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def load_csv(path: Path, label: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Features and 0/1 labels from a CSV file with a header row."""
    with path.open(encoding="utf-8") as f:
        header = f.readline().strip().split(",")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    column = header.index(label) if label else len(header) - 1
    y = data[:, column]
    if not np.isin(y, (0.0, 1.0)).all():
        raise SystemExit(f"{path}: the label column {header[column]!r} must hold 0 or 1")
    return np.delete(data, column, axis=1), y


def write_example(path: Path, *, seed: int, rows: int = 400, features: int = 5) -> None:
    """A synthetic, roughly separable data set (a shared true model, a site-specific shift)."""
    rng = np.random.default_rng(seed)
    true_w = np.random.default_rng(1234).normal(size=features)
    x = rng.normal(loc=rng.normal(scale=0.5, size=features), size=(rows, features))
    y = (x @ true_w + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    names = [f"x{i}" for i in range(features)] + ["label"]
    rows_text = [",".join(f"{v:.6f}" for v in row) + f",{label}" for row, label in zip(x, y)]
    path.write_text(",".join(names) + "\n" + "\n".join(rows_text) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("server", nargs="?", help="coordinator host:port")
    p.add_argument("csv", nargs="?", type=Path, help="training data (header row; 0/1 label)")
    p.add_argument("--label", help="label column name (default: the last column)")
    p.add_argument("--client-id", help="stable id (default: the one kept in --state-dir)")
    p.add_argument("--state-dir", help="where the client keeps its identity and resume info")
    p.add_argument("--max-train-s", type=float, default=0.0, help="local cap per round")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-example", type=Path, metavar="PATH",
                   help="write a synthetic CSV to PATH and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.write_example:
        write_example(args.write_example, seed=args.seed)
        return 0
    if not args.server or not args.csv:
        p.error("SERVER and CSV are required (or --write-example PATH)")
    # The host program, not the SDK, decides how logging looks.
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    x, y = load_csv(args.csv, args.label)
    model = LogisticRegression(x, y, seed=args.seed)
    summary = run_client(model.app(), args.server, client_id=args.client_id,
                         state_dir=args.state_dir, max_train_s=args.max_train_s,
                         max_reconnect_s=30.0)
    print(json.dumps({"client_id": summary.client_id, "tasks": summary.tasks_completed,
                      "refused": summary.tasks_refused, "rounds": summary.rounds,
                      "finished": summary.finished, "torch_imported": "torch" in sys.modules}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
