"""The gRPC driver: the coordinator service and the client's connection."""
