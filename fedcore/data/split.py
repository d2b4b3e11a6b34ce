"""A train/test split of a labelled dataset, as every loader in fedcore.data returns it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Features = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetSplit:
    """Features (float32) and integer labels (int64) for training and test."""

    x_train: Features
    y_train: Labels
    x_test: Features
    y_test: Labels

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train):
            raise ValueError(f"x_train has {len(self.x_train)} rows, y_train {len(self.y_train)}")
        if len(self.x_test) != len(self.y_test):
            raise ValueError(f"x_test has {len(self.x_test)} rows, y_test {len(self.y_test)}")

    @property
    def num_classes(self) -> int:
        """One more than the largest label seen in either part."""
        return int(max(self.y_train.max(initial=-1), self.y_test.max(initial=-1))) + 1
