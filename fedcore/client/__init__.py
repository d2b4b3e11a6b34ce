"""The client SDK: define what training means for your app, then connect it to a coordinator.

    app = FunctionalApp(get_parameters=init, fit=fit, evaluate=evaluate)   # NumPy in and out
    run_client(app, "coordinator:8080", state_dir="~/.myapp/fl")           # blocking
    client = BackgroundClient(app, "coordinator:8080", eligible=on_power)  # or in the background
    client.start(); ...; client.status; ...; client.stop(timeout=10)

Importing this package imports neither torch (`fedcore.client.torch_app.TorchApp` does) nor
gRPC: the loop talks to a `Connection` and handles `fedcore.client.connection_errors`; `run_client` and
`BackgroundClient` live with the gRPC driver (`fedcore.transport.grpc.client`) and load it on
first use.
"""

from typing import TYPE_CHECKING, Any

from fedcore.client.app import (
    ClientApp,
    ClientAppError,
    DeclineTask,
    EvalResult,
    FitResult,
    FunctionalApp,
)
from fedcore.client.events import (
    Callbacks,
    ClientPhase,
    ClientStatus,
    Refused,
    RefusedBy,
    Reported,
    RoundEvent,
    Selected,
    Trained,
)
from fedcore.client.floor import PrivacyFloor
from fedcore.client.handler import TaskHandler
from fedcore.client.loop import ClientError, ClientOptions, RunSummary
from fedcore.client.state import ResumeInfo, StateDir, StateError
from fedcore.protocol.messages import TrainConfig

if TYPE_CHECKING:
    from fedcore.transport.grpc.client import BackgroundClient, run_client

__all__ = [
    "BackgroundClient",
    "Callbacks",
    "ClientApp",
    "ClientAppError",
    "ClientError",
    "ClientOptions",
    "ClientPhase",
    "ClientStatus",
    "DeclineTask",
    "EvalResult",
    "FitResult",
    "FunctionalApp",
    "PrivacyFloor",
    "Refused",
    "RefusedBy",
    "Reported",
    "ResumeInfo",
    "RoundEvent",
    "RunSummary",
    "Selected",
    "StateDir",
    "StateError",
    "TaskHandler",
    "TrainConfig",
    "Trained",
    "run_client",
]


def __getattr__(name: str) -> Any:
    """`run_client` and `BackgroundClient`, from the gRPC driver on first use."""
    if name in ("BackgroundClient", "run_client"):
        from fedcore.transport.grpc import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
