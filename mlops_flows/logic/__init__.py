"""Plain computations and values: no Prefect, no store."""
