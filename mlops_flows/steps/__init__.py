"""What the flows' tasks do, as plain functions of settings and values: the Feast, GX, MLflow
and Evidently work goes through the adapters, the registry protocol through `registry`. A flow
module in `mlops_flows.flows` makes them tasks and wires them."""
