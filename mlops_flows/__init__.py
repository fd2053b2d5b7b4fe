"""The closed MLOps loop on Prefect, Feast, Great Expectations, MLflow and Evidently.

Parts, top to bottom (a part imports only the parts below it; `lint-imports` checks it):
`cli`, `examples`, `flows`, `steps`, `serving`, `registry`, `adapters`, `logic`, `ops`,
`settings`, `vocabulary`, `errors`. `lazy_checks` is installed first, before any of them."""

from mlops_flows import lazy_checks

lazy_checks.install()
