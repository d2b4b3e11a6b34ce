"""Files and databases: atomic writes (`atomic`), the coordinator's run store (`run_store`) and
checkpoint files (`checkpoints`). The engine and the protocol machines do no I/O; this does."""
