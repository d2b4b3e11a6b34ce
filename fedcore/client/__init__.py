"""The client SDK: define what training means for your app, then connect it to a coordinator.

    app = TorchApp(model, train_loader=train, test_loader=test)
    run_client(app, "coordinator:8080", client_id="clinic-7")          # blocking
    runner = BackgroundClient(app, "coordinator:8080"); runner.start()  # or in a thread
"""

from fedcore.client.app import ClientApp, ClientAppError, EvalResult, FitResult
from fedcore.client.handler import TaskHandler
from fedcore.client.runner import BackgroundClient, ClientError, RunSummary, run_client

__all__ = [
    "BackgroundClient",
    "ClientApp",
    "ClientAppError",
    "ClientError",
    "EvalResult",
    "FitResult",
    "RunSummary",
    "TaskHandler",
    "run_client",
]
