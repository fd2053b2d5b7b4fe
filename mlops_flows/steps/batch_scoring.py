"""The batch scoring flow's steps: the champion, the population's features at one time, their
validation, the scores and the output file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import get_run_logger
from pydantic import Field

from mlops_flows.adapters import batch_scoring, features
from mlops_flows.adapters.batch_scoring import ScoreDistribution
from mlops_flows.adapters.validation import ValidationResult
from mlops_flows.logic import training
from mlops_flows.logic.times import UtcDatetime
from mlops_flows.ops.runtime import FlowParameters
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import versions as registry
from mlops_flows.settings import Settings
from mlops_flows.steps.data_checks import check_or_stop


class BatchScoringParameters(FlowParameters):
    """Per-run knobs of batch scoring."""

    as_of: UtcDatetime | None = Field(
        default=None,
        description="Time the features are read at; empty means now. A naive time is UTC.",
    )
    population_view: str | None = Field(
        default=None,
        description="Feature view whose source file lists the entities to score; empty: the "
        "use case's (features.population_view).",
    )


@dataclass(frozen=True)
class ScoringSet:
    """Features of the population at one time, through one FeatureService."""

    frame: pd.DataFrame
    feature_service: str
    as_of: datetime


@dataclass(frozen=True)
class BatchScoringOutcome:
    """What a batch run wrote; the CLI and the tests read it."""

    path: Path
    rows: int
    model_name: str
    model_version: str
    feature_service: str
    as_of: datetime
    distribution: ScoreDistribution


def load_serving_champion(settings: Settings) -> registry.Champion:
    """The model behind `champion`, or a clear error before any feature is read."""
    name, uri = settings.mlflow.model_name, settings.tracking_uri
    champion = registry.load_champion(uri, name)
    if champion is None:
        raise registry.no_champion(name, uri)
    return champion


def build_scoring_set(settings: Settings, parameters: BatchScoringParameters) -> ScoringSet:
    """Point-in-time features of every customer in the population source at `as_of`."""
    as_of = parameters.as_of or datetime.now(UTC)
    store = features.open_store(settings.features.repo_path)
    service = features.get_feature_service(store, settings.features.feature_service)
    features.check_sources(store, service)
    population = batch_scoring.read_population(
        store,
        settings.population_view(parameters.population_view),
        settings.features.entity_key,
        as_of,
    )
    frame = batch_scoring.build_scoring_set(
        store,
        service,
        population,
        as_of,
        settings.features.entity_key,
        settings.features.timestamp_column,
    )
    get_run_logger().info("Read %s features of %d customers at %s", service.name, len(frame), as_of)
    return ScoringSet(frame, service.name, as_of)


def validate_scoring_set(settings: Settings, scoring_set: ScoringSet) -> ValidationResult:
    """Run the scoring suite; on failure store the report, emit `data invalid` and stop."""
    return check_or_stop(
        settings,
        scoring_set.frame,
        settings.expectations.scoring_suite,
        what="Scoring set",
        consequence="No predictions were written.",
        payload={"feature_service": scoring_set.feature_service},
    )


def score_population(
    settings: Settings, champion: registry.Champion, scoring_set: ScoringSet
) -> pd.DataFrame:
    """Churn probability of every customer, with the model and features that produced it."""
    columns = training.model_feature_names(champion.model)
    scores = training.predict_scores(
        champion.model, scoring_set.frame, columns, settings.training.threads
    )
    return batch_scoring.prediction_table(
        scoring_set.frame[settings.features.entity_key].tolist(),
        scores,
        scoring_set.as_of,
        settings.mlflow.model_name,
        champion.version,
        scoring_set.feature_service,
    )


def write_predictions(settings: Settings, predictions: pd.DataFrame, as_of: datetime) -> Path:
    """Write `predictions/batch-<as_of>.parquet` in the workspace, all or nothing."""
    folder = Workspace(settings.home_resolved).predictions
    return batch_scoring.write_atomically(predictions, folder / batch_scoring.output_name(as_of))


def summary(outcome: BatchScoringOutcome) -> str:
    spread = outcome.distribution
    quantiles = " | ".join(f"{value:.3f}" for value in spread.quantiles.values())
    bands = "\n".join(f"| {band} | {rows} |" for band, rows in spread.bands)
    return (
        f"## Batch scored at {outcome.as_of:%Y-%m-%d %H:%M} UTC\n\n"
        f"- rows: **{outcome.rows}**\n- output: `{outcome.path}`\n"
        f"- model: `{outcome.model_name}` v{outcome.model_version} "
        f"(feature service `{outcome.feature_service}`)\n"
        f"- mean churn probability: {spread.mean:.4f}\n\n"
        f"| {' | '.join(spread.quantiles)} |\n|{'---|' * len(spread.quantiles)}\n"
        f"| {quantiles} |\n\n| band | rows |\n|---|---|\n{bands}\n"
    )
