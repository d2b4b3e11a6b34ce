"""fedcore: federated learning with a gRPC coordinator, DP-SGD and secure aggregation."""

from fedcore.errors import FedcoreError

__all__ = ["FedcoreError", "__version__"]
__version__ = "0.1.0"
