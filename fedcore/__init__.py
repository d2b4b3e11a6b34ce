"""fedcore: federated learning with a gRPC coordinator, DP-SGD and secure aggregation."""

__version__ = "0.1.0"
