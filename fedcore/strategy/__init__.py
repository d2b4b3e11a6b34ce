"""Strategies: what a round asks of clients and how their results become the next model."""

from fedcore.strategy.base import Strategy
from fedcore.strategy.dp_fedavg import DPFedAvg
from fedcore.strategy.fedavg import FedAvg, FedProx

__all__ = ["DPFedAvg", "FedAvg", "FedProx", "Strategy"]
