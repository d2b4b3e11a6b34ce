"""Strategies: what a round asks of clients and how their results become the next model.

`fedcore.strategy.dp_fedavg.DPFedAvg` (user-level DP) is imported from its module: it needs
Opacus' accountant, which clients without torch must not load.
"""

from fedcore.strategy.base import Strategy
from fedcore.strategy.fedavg import FedAvg, FedProx

__all__ = ["FedAvg", "FedProx", "Strategy"]
