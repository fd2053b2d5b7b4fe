"""Redeploy after a promotion: online features, service reload, skew check, else roll back."""

from __future__ import annotations

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from mlops_flows.settings import Settings
from mlops_flows.steps import redeploy as steps
from mlops_flows.steps.redeploy import (
    RedeployFailedError,
    RedeployOutcome,
    RedeployParameterError,
    RedeployParameters,
    SkewCheckError,
)
from mlops_flows.steps.start import start

__all__ = [
    "RedeployFailedError",
    "RedeployOutcome",
    "RedeployParameterError",
    "RedeployParameters",
    "redeploy",
]

check_parameters = task(cache_policy=NO_CACHE)(steps.check_parameters)
materialize_online_store = task(cache_policy=NO_CACHE)(steps.materialize_online_store)
reload_service = task(cache_policy=NO_CACHE)(steps.reload_service)
smoke_check = task(cache_policy=NO_CACHE)(steps.smoke_check)
roll_back = task(cache_policy=NO_CACHE)(steps.roll_back)


def _deploy(settings: Settings, parameters: RedeployParameters, url: str) -> RedeployOutcome:
    materialized_at = materialize_online_store(settings)
    with steps.service_client(settings, url) as service:
        reload_service(service, parameters.version)
        check = smoke_check(settings, service, parameters, materialized_at)
    create_table_artifact(key="skew-check", table=[check.to_row()], description="Skew check")
    if not check.passed:
        raise SkewCheckError(check.reason)
    return RedeployOutcome(parameters.version, url, materialized_at, check)


@flow(name="redeploy-churn-model", log_prints=True)
def redeploy(parameters: RedeployParameters) -> RedeployOutcome:
    """Serve the promoted version, or put the previous champion back and say why."""
    settings = start(signs=True).settings
    url = settings.serving.base_url()  # a setting, never a parameter: the reload token goes there

    check_parameters(settings, parameters)
    try:
        outcome = _deploy(settings, parameters, url)
    except Exception as error:  # any failure after the checks rolls back, then re-raises
        rollback = roll_back(settings, parameters, url, steps.failure_reason(error))
        create_markdown_artifact(
            key="redeploy", markdown=f"## Redeploy failed\n\n{rollback.summary()}\n"
        )
        raise RedeployFailedError(rollback.summary()) from error

    message = f"v{outcome.version} serves at {url}; {outcome.skew_check.reason}"
    create_markdown_artifact(key="redeploy", markdown=f"## Redeployed\n\n{message}\n")
    print(message)
    return outcome
