"""Datasets and federated partitioners: digits, MNIST, FedProx Synthetic, IID/Dirichlet/shards."""

from fedcore.data.split import DatasetSplit

__all__ = ["DatasetSplit"]
