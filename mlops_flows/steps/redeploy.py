"""The redeploy flow's steps: check the parameters against the registry, load the online
store, reload the service, compare online with offline scores, and roll back on failure."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import get_run_logger
from pydantic import Field

from mlops_flows.adapters import batch_scoring, events, features, online_store
from mlops_flows.errors import MlopsError
from mlops_flows.logic import training
from mlops_flows.logic.redeploy import (
    Rollback,
    SkewCheck,
    champion_mismatch,
    compare_scores,
    sample_customers,
)
from mlops_flows.ops.runtime import FlowParameters
from mlops_flows.registry import governance
from mlops_flows.registry import versions as registry
from mlops_flows.registry.lock import registry_lock
from mlops_flows.serving.client import ServiceClient, ServiceError
from mlops_flows.serving.contract import reload_token
from mlops_flows.settings import Settings
from mlops_flows.vocabulary import Tag


class RedeployParameters(FlowParameters):
    """What to deploy and what to fall back to; a promotion event carries both versions."""

    version: str = Field(description="The promoted version to serve (the event's `version`).")
    previous_version: str | None = Field(
        default=None,
        description="The champion before the promotion, restored if the redeploy fails (the "
        "event's `previous_version`); empty when there was none.",
    )
    smoke_sample: int = Field(
        default=20, ge=1, description="Customers scored online and offline in the skew check."
    )
    smoke_seed: int = Field(default=42, description="Seed of the smoke sample.")
    population_view: str | None = Field(
        default=None,
        description="Feature view whose source file lists the entities to sample; empty: the "
        "use case's (features.population_view).",
    )


class RedeployParameterError(MlopsError):
    """The parameters disagree with the registry; nothing was changed."""


class ServedVersionError(MlopsError):
    """The service serves another version than the one being deployed."""


class SkewCheckError(MlopsError):
    """Online scores differ from offline scores of the same customers."""


class RedeployFailedError(MlopsError):
    """The redeploy failed and was rolled back as far as possible; the message says how far."""


@dataclass(frozen=True)
class RedeployOutcome:
    """A successful redeploy: what serves, from which online features, and the skew check."""

    version: str
    service_url: str
    materialized_at: datetime
    skew_check: SkewCheck


def service_client(settings: Settings, url: str) -> ServiceClient:
    return ServiceClient(url, reload_token(settings), settings.serving.request_timeout_seconds)


def check_parameters(settings: Settings, parameters: RedeployParameters) -> None:
    """`champion` must point at `version`, and `previous_version` must exist; else stop now."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, name = MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    mismatch = champion_mismatch(registry.champion_version(client, name), parameters.version)
    if mismatch is not None:
        raise RedeployParameterError(f"Model '{name}': {mismatch} Nothing was changed.")
    previous = parameters.previous_version
    if previous is None:
        return
    if previous == parameters.version:
        raise RedeployParameterError(
            f"parameter `previous_version`={previous!r} equals `version`: a rollback would "
            "restore the version being deployed. Pass the champion before the promotion, or "
            "leave it empty. Nothing was changed."
        )
    try:
        client.get_model_version(name, previous)
    except MlflowException as error:
        raise RedeployParameterError(
            f"parameter `previous_version`={previous!r} is not a version of model '{name}' "
            f"({error.message}); a rollback could not restore it. Nothing was changed."
        ) from error


def materialize_online_store(settings: Settings) -> datetime:
    """Load the online store up to now; return the time it is loaded to."""
    end = datetime.now(UTC)
    reloaded = online_store.materialize(features.open_store(settings.features.repo_path), end)
    if reloaded:
        get_run_logger().warning(online_store.lost_values_notice(reloaded))
    get_run_logger().info("Online store materialized up to %s", end.isoformat())
    return end


def reload_service(service: ServiceClient, version: str) -> None:
    """Make the service load the champion, then check it serves `version`."""
    reloaded = service.reload()
    health = service.health()
    for where, served in (("reload", reloaded.model_version), ("health", health.model_version)):
        if served != version:
            raise ServedVersionError(
                f"After a reload the service at {service.base_url} reports v{served} in its "
                f"{where} answer, not v{version}: it did not pick up the new champion."
            )


def smoke_check(
    settings: Settings,
    service: ServiceClient,
    parameters: RedeployParameters,
    materialized_at: datetime,
) -> SkewCheck:
    """Score a seeded sample through the service and offline at the materialization time."""
    store = features.open_store(settings.features.repo_path)
    feature_service = features.get_feature_service(store, settings.features.feature_service)
    key = settings.features.entity_key
    population = batch_scoring.read_population(
        store, settings.population_view(parameters.population_view), key, materialized_at
    )
    sample = sample_customers(population, parameters.smoke_sample, parameters.smoke_seed)

    online: dict[int, float] = {}
    batch = settings.serving.max_batch_size
    for start in range(0, len(sample), batch):
        answer = service.predict(sample[start : start + batch])
        if answer.model_version != parameters.version:
            raise ServedVersionError(
                f"The service at {service.base_url} scored with v{answer.model_version}, "
                f"not v{parameters.version}."
            )
        online |= {p.customer_id: p.churn_probability for p in answer.predictions}

    frame = batch_scoring.build_scoring_set(
        store,
        feature_service,
        sample,
        materialized_at,
        key,
        settings.features.timestamp_column,
    )
    model = registry.load_version(
        settings.tracking_uri, settings.mlflow.model_name, parameters.version
    )
    scores = training.predict_scores(
        model, frame, training.model_feature_names(model), settings.training.threads
    )
    offline = dict(zip(frame[key].astype("int64").tolist(), scores.tolist(), strict=True))
    return compare_scores(online, offline)


def roll_back(
    settings: Settings, parameters: RedeployParameters, url: str, reason: str
) -> Rollback:
    """Restore the previous champion, mark the failed version, reload the service, tell."""
    from mlflow import MlflowClient

    logger = get_run_logger()
    client, name, version = (
        MlflowClient(settings.tracking_uri),
        settings.mlflow.model_name,
        parameters.version,
    )
    restored = parameters.previous_version
    actor = events.actor("redeploy-rollback")
    if restored is not None:
        with registry_lock(name, settings.governance.lock_timeout_seconds):
            governance.rollback(
                client, name, to=restored, actor=actor, reason=reason, expected_current=version
            )
    else:
        # Nothing to restore: the version keeps serving, with the failure on record.
        registry.record(client, name, version, {Tag.REDEPLOY_FAILURE: reason})

    reload_error, served = None, None
    try:
        with service_client(settings, url) as service:
            served = service.reload().model_version
    except (ServiceError, FileNotFoundError) as error:
        # The registry is already right; a service that comes back loads the champion itself.
        reload_error = str(error)
        logger.warning("Rollback reload of the service failed: %s", error)

    events.emit(
        events.MODEL_ROLLED_BACK,
        name,
        {"version": version, "restored_version": restored, "reason": reason},
    )
    return Rollback(version, restored, reason, reload_error, served)


def failure_reason(error: BaseException) -> str:
    known = (ServiceError, ServedVersionError, SkewCheckError)
    return str(error) if isinstance(error, known) else f"{type(error).__name__}: {error}"
