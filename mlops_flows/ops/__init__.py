"""The process around the flows: runtime environment, workspace, local stack, code lineage."""
