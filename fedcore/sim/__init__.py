"""In-process simulation: lazy client populations and backends that train many clients at once."""
