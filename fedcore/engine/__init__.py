"""The coordinator's round engine: registry, selection, rounds and deadlines, without I/O."""

from fedcore.engine.config import EngineConfig, SelectionConfig
from fedcore.engine.engine import Phase, RoundEngine
from fedcore.engine.errors import EngineError, Reason
from fedcore.engine.records import RoundRecord

__all__ = [
    "EngineConfig",
    "EngineError",
    "Phase",
    "Reason",
    "RoundEngine",
    "RoundRecord",
    "SelectionConfig",
]
