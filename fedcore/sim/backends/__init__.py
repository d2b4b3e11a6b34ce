"""Local-training backends for simulation; all give the same per-client results for the same seeds."""
