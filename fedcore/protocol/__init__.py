"""The protocol's vocabulary, shared by every driver: parameters, layouts, messages and errors.

`params` (what a model is: named NumPy arrays), `specs` (layouts a run pins), `messages` (typed
tasks and results the engine and the client handler exchange) and `errors` (malformed input).
Nothing here does I/O or knows about gRPC; `fedcore.wire` maps these to and from bytes.
"""
