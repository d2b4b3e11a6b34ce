"""The coordinator process: the gRPC server with TLS, tokens, the run store, checkpoints,
`--resume`, Prometheus metrics and history files around one `RoundEngine` (`process`)."""
