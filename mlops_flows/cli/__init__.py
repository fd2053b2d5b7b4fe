"""The `mlops` command: one module per command group."""
