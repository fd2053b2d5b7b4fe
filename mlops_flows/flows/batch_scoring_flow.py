"""Batch scoring: the whole population at one time, scored by the champion, one parquet file."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mlops_flows.adapters import batch_scoring
from mlops_flows.steps import batch_scoring as steps
from mlops_flows.steps.batch_scoring import BatchScoringOutcome, BatchScoringParameters
from mlops_flows.steps.start import start

__all__ = ["BatchScoringOutcome", "BatchScoringParameters", "score_batch"]

load_serving_champion = task(cache_policy=NO_CACHE)(steps.load_serving_champion)
build_scoring_set = task(cache_policy=NO_CACHE)(steps.build_scoring_set)
validate_scoring_set = task(cache_policy=NO_CACHE)(steps.validate_scoring_set)
score_population = task(cache_policy=NO_CACHE)(steps.score_population)
write_predictions = task(cache_policy=NO_CACHE)(steps.write_predictions)


@flow(name="score-churn-batch", log_prints=True)
def score_batch(parameters: BatchScoringParameters | None = None) -> BatchScoringOutcome:
    """Score every customer at `as_of` with the champion and write one parquet file."""
    parameters = parameters or BatchScoringParameters()
    parameters = parameters.model_copy(update={"as_of": parameters.as_of or datetime.now(UTC)})
    settings = start().settings

    champion = load_serving_champion(settings)
    scoring_set = build_scoring_set(settings, parameters)
    validate_scoring_set(settings, scoring_set)
    predictions = score_population(settings, champion, scoring_set)
    path = write_predictions(settings, predictions, scoring_set.as_of)

    outcome = BatchScoringOutcome(
        path=path,
        rows=len(predictions),
        model_name=settings.mlflow.model_name,
        model_version=champion.version,
        feature_service=scoring_set.feature_service,
        as_of=scoring_set.as_of,
        distribution=batch_scoring.score_distribution(predictions["churn_probability"].to_numpy()),
    )
    create_markdown_artifact(
        key="batch-scores", markdown=steps.summary(outcome), description="Batch scoring"
    )
    print(f"Scored {outcome.rows} customers with v{outcome.model_version}: {outcome.path}")
    return outcome
