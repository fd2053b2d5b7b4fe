"""The Prefect flows that `prefect.yaml` deploys: they wire the steps of the parts below."""
