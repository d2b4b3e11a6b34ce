"""Streaming aggregators: fold client updates one at a time in O(model) memory.

Wrappers (clipping, DP noise) compose around an inner aggregator, after TFF's aggregators.
"""

from fedcore.aggregate.base import AggregateResult, Aggregator
from fedcore.aggregate.mean import WeightedMean

__all__ = ["AggregateResult", "Aggregator", "WeightedMean"]
