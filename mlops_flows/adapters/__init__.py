"""One module per outside library or store: Feast, Great Expectations, MLflow, Evidently,
Prefect events and task runners, and batch scoring's population and output file."""
