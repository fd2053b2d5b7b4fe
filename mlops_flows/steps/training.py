"""The training flow's steps: the point-in-time training set, its validation, the fit, the
evaluation against the champion, the MLflow run and the registered version."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger
from prefect.runtime import flow_run
from pydantic import Field

from mlops_flows import vocabulary
from mlops_flows.adapters import events, features, tracking
from mlops_flows.adapters.validation import ValidationResult
from mlops_flows.logic import plots, training
from mlops_flows.logic.evaluation import (
    PRIMARY_METRIC,
    GateReport,
    GateResult,
    compute_metrics,
    evaluate_gates,
)
from mlops_flows.logic.keys import TrainingSetKeys, keys_of
from mlops_flows.logic.times import UtcDatetime
from mlops_flows.ops import lineage
from mlops_flows.ops.runtime import FlowParameters
from mlops_flows.registry import versions as registry
from mlops_flows.settings import Settings
from mlops_flows.steps.data_checks import check_or_stop
from mlops_flows.vocabulary import Tag


class TrainingParameters(FlowParameters):
    """Per-run knobs; empty fields take their defaults from settings."""

    as_of: UtcDatetime | None = Field(
        default=None, description="End of the label window; empty means the latest label."
    )
    window_days: int | None = Field(default=None, ge=14, description="Days of labels to use.")
    holdout_days: int | None = Field(default=None, ge=1, description="Last days held out.")
    seed: int | None = Field(default=None, description="Seed of every random source.")
    max_iter: int | None = Field(default=None, ge=1, description="Boosting iterations.")
    learning_rate: float | None = Field(default=None, gt=0, le=1, description="Learning rate.")
    reason: str = Field(default="manual", description="Why this run: manual, schedule, drift.")


def model_parameters(
    settings: Settings, parameters: TrainingParameters
) -> training.ModelParameters:
    """The run's knobs over the settings' defaults."""
    return training.ModelParameters(
        max_iter=parameters.max_iter or settings.training.max_iter,
        learning_rate=parameters.learning_rate or settings.training.learning_rate,
        max_leaf_nodes=settings.training.max_leaf_nodes,
        min_samples_leaf=settings.training.min_samples_leaf,
        seed=settings.training.seed if parameters.seed is None else parameters.seed,
        threads=settings.training.threads,
    )


@dataclass(frozen=True)
class TrainingSet:
    """A point-in-time training set and what it was built from."""

    frame: pd.DataFrame
    feature_service: str
    feature_service_digest: str
    window_start: datetime
    window_end: datetime


@dataclass(frozen=True)
class Evaluation:
    """Scores, metrics and gate results of a candidate on the holdout."""

    metrics: dict[str, float]
    report: GateReport
    holdout_scores: np.ndarray
    champion_scores: np.ndarray | None
    champion_version: str | None


class TrainingStatus(StrEnum):
    """How a training run ended."""

    CHAMPION = "champion"  # promoted (policy auto)
    CHALLENGER = "challenger"  # passed its gates, awaits a person's approval (policy manual)
    REJECTED = "rejected"  # failed a gate
    SUPERSEDED = "superseded"  # the champion moved while it trained: it lost the race
    DUPLICATE = "duplicate"  # a version was trained from the same request: nothing trained

    @property
    def champion_unchanged(self) -> bool:
        return self in (self.REJECTED, self.SUPERSEDED, self.DUPLICATE)


@dataclass(frozen=True)
class TrainingOutcome:
    """What a training run ended with; the CLI and the tests read it."""

    status: TrainingStatus
    version: str
    run_id: str
    previous_champion: str | None
    gate_summary: str


def build_training_set(settings: Settings, parameters: TrainingParameters) -> TrainingSet:
    """Point-in-time join of the FeatureService onto the label window."""
    keys = keys_of(settings)
    store = features.open_store(settings.features.repo_path)
    service = features.get_feature_service(store, settings.features.feature_service)
    features.check_sources(store, service)
    labels = features.read_labels(settings.labels_path, keys)
    end = parameters.as_of or labels[keys.timestamp].max().to_pydatetime()
    start = end - timedelta(days=parameters.window_days or settings.training.window_days)
    window = features.select_window(labels, keys, start, end)
    frame = features.build_training_set(store, service, window, keys)
    definition = features.feature_service_definition(store, service)
    get_run_logger().info(
        "Built %d training rows from %s (%s to %s)", len(frame), service.name, start, end
    )
    return TrainingSet(frame, service.name, features.definition_digest(definition), start, end)


def validate_training_set(settings: Settings, training_set: TrainingSet) -> ValidationResult:
    """Run the training suite; on failure store the report, emit `data invalid` and stop."""
    return check_or_stop(
        settings,
        training_set.frame,
        settings.expectations.training_suite,
        what="Training set",
        consequence="Nothing was trained or registered.",
        payload={"feature_service": training_set.feature_service},
    )


def fit_candidate(
    split: training.TimeSplit, keys: TrainingSetKeys, parameters: training.ModelParameters
) -> Any:
    """Fit the pipeline on the rows before the holdout."""
    return training.fit_model(split.train, keys, parameters)


def evaluate_candidate(
    settings: Settings,
    model: Any,
    split: training.TimeSplit,
    keys: TrainingSetKeys,
    seed: int,
) -> Evaluation:
    """Score train and holdout, score the champion on the same holdout, apply every gate."""
    columns = training.feature_columns(split.holdout, keys)
    y_holdout = split.holdout[keys.label].to_numpy()
    threads = settings.training.threads
    holdout_scores = training.predict_scores(model, split.holdout, columns, threads)
    metrics = {f"holdout_{k}": v for k, v in compute_metrics(y_holdout, holdout_scores).items()}
    train = training.metric_rows(split.train, settings.training.train_metric_rows, seed)
    train_scores = training.predict_scores(model, train, columns, threads)
    y_train = train[keys.label].to_numpy()
    metrics |= {f"train_{k}": v for k, v in compute_metrics(y_train, train_scores).items()}

    champion = registry.load_champion(settings.tracking_uri, settings.mlflow.model_name)
    champion_scores, blocked = None, None
    if champion is not None:
        needed = training.model_feature_names(champion.model)
        try:
            champion_scores = training.predict_scores(
                champion.model, split.holdout, needed, threads
            )
            champion_metrics = compute_metrics(y_holdout, champion_scores)
            metrics |= {f"champion_holdout_{k}": v for k, v in champion_metrics.items()}
        except training.TrainingDataError as error:
            blocked = GateResult(
                "champion_comparison",
                False,
                None,
                None,
                f"champion v{champion.version} cannot score this holdout: {error}",
            )
    slices = split.holdout[list(settings.gates.slice_columns)]
    report = evaluate_gates(
        y_holdout, holdout_scores, champion_scores, slices, settings.gates, seed
    )
    if blocked is not None:
        report = GateReport(results=(*report.results, blocked))
    return Evaluation(
        metrics, report, holdout_scores, champion_scores, champion.version if champion else None
    )


def lineage_of(
    settings: Settings,
    training_set: TrainingSet,
    validation: ValidationResult,
    split: training.TimeSplit,
    model_parameters: training.ModelParameters,
    keys: TrainingSetKeys,
) -> lineage.Lineage:
    code = lineage.code_version(settings.project_dir)
    return lineage.Lineage(
        code_commit=code.commit,
        code_dirty=code.dirty,
        lock_digest=lineage.file_digest(settings.project_dir / lineage.LOCK_FILE),
        feature_service=training_set.feature_service,
        feature_service_digest=training_set.feature_service_digest,
        training_set_digest=features.frame_digest(training_set.frame),
        training_set_rows=len(training_set.frame),
        label_window_start=training_set.window_start.isoformat(),
        label_window_end=training_set.window_end.isoformat(),
        suite_name=validation.suite_name,
        suite_digest=validation.suite_digest,
        suite_success=validation.success,
        seed=model_parameters.seed,
        parameters=asdict(model_parameters),
        entity_rows_digest=features.entity_rows_digest(training_set.frame, keys),
        holdout_cutoff=split.cutoff.isoformat(),
    )


def _figures(
    model: Any,
    holdout: pd.DataFrame,
    columns: list[str],
    y_holdout: np.ndarray,
    evaluation: Evaluation,
    model_parameters: training.ModelParameters,
) -> dict[str, Any]:
    scores = evaluation.holdout_scores
    importances = plots.permutation_importances(
        model,
        holdout[columns],
        y_holdout,
        seed=model_parameters.seed,
        threads=model_parameters.threads,
    )
    return {
        "plots/roc_curve.png": plots.roc_curve_figure(
            y_holdout, scores, evaluation.champion_scores
        ),
        "plots/calibration.png": plots.calibration_figure(y_holdout, scores),
        "plots/confusion_matrix.png": plots.confusion_matrix_figure(y_holdout, scores),
        "plots/feature_importance.png": plots.feature_importance_figure(importances),
    }


def log_run(
    settings: Settings,
    experiment_id: str,
    training_set: TrainingSet,
    split: training.TimeSplit,
    model: Any,
    evaluation: Evaluation,
    validation: ValidationResult,
    bundle: lineage.Lineage,
    model_parameters: training.ModelParameters,
    parameters: TrainingParameters,
    meter: lineage.ResourceMeter,
) -> tracking.LoggedRun:
    """One MLflow run: parameters, metrics, plots, dataset, lineage, reference, model."""
    keys = keys_of(settings)
    columns = training.feature_columns(training_set.frame, keys)
    y_holdout = split.holdout[keys.label].to_numpy()
    record = tracking.RunRecord(
        run_name=f"train-{training_set.window_end:%Y%m%d}-{parameters.reason}",
        tags={
            **bundle.to_tags(),
            "mlops.reason": parameters.reason,
            "mlops.prefect_flow_run_id": str(flow_run.get_id() or "none"),
            "mlops.champion_at_training": evaluation.champion_version or "none",
        },
        parameters={
            **asdict(model_parameters),
            "window_start": training_set.window_start.isoformat(),
            "window_end": training_set.window_end.isoformat(),
            "holdout_cutoff": split.cutoff.isoformat(),
            "train_rows": len(split.train),
            "holdout_rows": len(split.holdout),
            "train_metric_rows": settings.training.train_metric_rows,
            "feature_service": training_set.feature_service,
            "promotion_policy": settings.promotion_policy.value,
            **{f"gate_{k}": v for k, v in settings.gates.model_dump().items()},
        },
        metrics={**evaluation.metrics, **meter.read()},
        figures=_figures(model, split.holdout, columns, y_holdout, evaluation, model_parameters),
        documents={
            "lineage.json": bundle.to_dict(),
            "gates.json": {
                "passed": evaluation.report.passed,
                "results": evaluation.report.to_rows(),
            },
            "validation.json": validation.to_dict(),
            "card.json": settings.card.model_dump(mode="json", exclude={"description"}),
        },
        training_set=training_set.frame,
        training_set_source=str(settings.labels_path),
        training_set_digest=bundle.training_set_digest,
        label_column=keys.label,
        model=model,
        features=columns,
        seed=model_parameters.seed,
        started_at_ms=meter.started_at_ms,
    )
    return tracking.log_training_run(experiment_id, record)


def register_candidate(
    settings: Settings, logged: tracking.LoggedRun, bundle: lineage.Lineage, evaluation: Evaluation
) -> str:
    """Register the version with its searchable facts (mlops_flows.vocabulary), keyed by this
    flow run so that a retried run finds it instead of registering a second one."""
    from mlflow import MlflowClient

    report = evaluation.report
    primary = evaluation.metrics[f"holdout_{PRIMARY_METRIC}"]
    registered = registry.register_version(
        MlflowClient(settings.tracking_uri),
        settings.mlflow.model_name,
        logged.model_uri,
        logged.run_id,
        {
            Tag.GATES_PASSED: "true" if report.passed else "false",
            Tag.GATES_SUMMARY: report.summary(),
            vocabulary.metric_tag(PRIMARY_METRIC): f"{primary:.4f}",
            Tag.CODE_COMMIT: bundle.code_commit,
            Tag.FEATURE_SERVICE: bundle.feature_service,
            Tag.TRAINING_SET_DIGEST: bundle.training_set_digest,
            Tag.FLOW_RUN: events.flow_run_key(),
            Tag.REQUEST_KEY: bundle.request_key(),
            Tag.EVALUATED_AGAINST: evaluation.champion_version or "none",
            Tag.MODEL_DIGEST: logged.model_sha256,
        },
        description=settings.card.description,
    )
    return str(registered.version)


def trained_from(settings: Settings, bundle: lineage.Lineage) -> TrainingOutcome | None:
    """The outcome `duplicate` if a version was trained from this request: the same model
    again would only add a version and a history entry (training twice changes nothing)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, name = MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    try:
        version = registry.first_version_tagged(client, name, Tag.REQUEST_KEY, bundle.request_key())
    except (MlflowException, OSError) as error:
        doing = "looking for a version trained from this request"
        left = "Nothing was trained or registered."
        down = tracking.server_stopped(settings.tracking_uri, error, doing, left)
        if down is None:
            raise
        raise down from error
    if version is None:
        return None
    registered = client.get_model_version(name, version)
    status = registered.tags.get(Tag.STATUS, "not settled")
    summary = (
        f"nothing trained: v{version} ({status}) was trained from this same request (data, "
        "features, suite, code, lock, parameters, seed). Train again with another --seed or "
        "window to get another model."
    )
    current = registry.champion_version(client, name)
    return TrainingOutcome(
        TrainingStatus.DUPLICATE, version, str(registered.run_id), current, summary
    )
