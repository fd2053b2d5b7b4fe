"""Rebuild a registered version from its lineage, retrain it, and name whatever changed."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from mlops_flows.adapters import features
from mlops_flows.adapters.validation import suite_digest, validate_frame
from mlops_flows.errors import MlopsError
from mlops_flows.logic import training
from mlops_flows.logic.evaluation import compute_metrics
from mlops_flows.logic.keys import TrainingSetKeys, keys_of
from mlops_flows.logic.reproduction_checks import (
    Check,
    Observed,
    ReproductionReport,
    compare_lineage,
    compare_metrics,
    compare_predictions,
    compare_split,
)
from mlops_flows.ops import lineage
from mlops_flows.ops.lineage import Lineage
from mlops_flows.registry import versions as registry
from mlops_flows.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient


class ReproductionError(MlopsError):
    """A version cannot be reproduced at all: it does not exist or its lineage is unreadable."""


@dataclass(frozen=True)
class RecordedVersion:
    """What the registry and the version's run hold about it."""

    run_id: str
    lineage: Lineage
    metrics: dict[str, float]
    parameters: dict[str, str]


def read_version(client: MlflowClient, name: str, version: str) -> RecordedVersion:
    """The version's run id, lineage, metrics and parameters, or an error naming the versions."""
    from mlflow.exceptions import MlflowException

    try:
        model_version = client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        known = known_versions(client, name)
        if not known:
            raise ReproductionError(
                f"Model '{name}' has no registered versions in {client.tracking_uri}. Train one "
                "first (`mlops train`), or set MLOPS_MLFLOW__MODEL_NAME to your model."
            ) from None
        raise ReproductionError(
            f"Model '{name}' has no version '{version}' (versions: {', '.join(known)}). "
            "Pass one of those."
        ) from None
    run_id = str(model_version.run_id)
    run = client.get_run(run_id)
    parameters = dict(run.data.params)
    return RecordedVersion(
        run_id=run_id,
        lineage=_read_lineage(client, run_id, dict(run.data.tags), parameters),
        metrics=dict(run.data.metrics),
        parameters=parameters,
    )


def known_versions(client: MlflowClient, name: str) -> list[str]:
    """Registered versions of a model, oldest first."""
    found = client.search_model_versions(f"name='{name}'")
    return [str(v) for v in sorted(int(model_version.version) for model_version in found)]


def _read_lineage(
    client: MlflowClient, run_id: str, tags: dict[str, str], parameters: dict[str, str]
) -> Lineage:
    """`lineage.json` of the run; the `lineage.*` tags when the document is missing."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="mlops-lineage-") as folder:
        try:
            path = client.download_artifacts(run_id, "lineage.json", folder)
            return Lineage.from_dict(json.loads(Path(path).read_text()))
        except (MlflowException, OSError):
            pass  # an older or partial run: the tags carry the same bundle
    model_fields = {item.name for item in fields(training.ModelParameters)}
    model_parameters = {
        name: float(value) if name == "learning_rate" else int(value)
        for name, value in parameters.items()
        if name in model_fields
    }
    try:
        return Lineage.from_tags(tags, model_parameters)
    except (TypeError, ValueError) as error:
        raise ReproductionError(
            f"Run {run_id} has neither lineage.json nor complete lineage.* tags ({error}); it "
            "was not logged by the training flow and cannot be reproduced."
        ) from None


def reproduce(settings: Settings, version: str) -> ReproductionReport:
    """Rebuild the version's training set, retrain it and compare everything with its record."""
    from mlflow import MlflowClient

    name, keys = settings.mlflow.model_name, keys_of(settings)
    recorded = read_version(MlflowClient(settings.tracking_uri), name, version)
    bundle = recorded.lineage
    frame, definition = rebuild_training_set(settings, bundle, keys)
    suite_path = settings.suite_path(settings.expectations.training_suite)
    validation = validate_frame(frame, suite_path)
    observed = Observed(
        code=lineage.code_version(settings.project_dir),
        lock_digest=lineage.file_digest(settings.project_dir / lineage.LOCK_FILE),
        suite_name=validation.suite_name,
        suite_digest=suite_digest(suite_path),
        suite_success=validation.success,
        feature_service=bundle.feature_service,
        feature_service_digest=definition,
        entity_rows_digest=features.entity_rows_digest(frame, keys),
        training_set_digest=features.frame_digest(frame),
        training_set_rows=len(frame),
    )
    checks = compare_lineage(bundle, observed)
    checks += _retrain_checks(settings, recorded, frame, keys, version)
    return ReproductionReport(name, version, recorded.run_id, tuple(checks))


def rebuild_training_set(
    settings: Settings, recorded: Lineage, keys: TrainingSetKeys
) -> tuple[pd.DataFrame, str]:
    """The recorded label window joined with the recorded feature service, as training did;
    returns the frame and the service's definition digest now."""
    store = features.open_store(settings.features.repo_path)
    service = features.get_feature_service(store, recorded.feature_service)
    features.check_sources(store, service)
    labels = features.read_labels(settings.labels_path, keys)
    start = datetime.fromisoformat(recorded.label_window_start)
    end = datetime.fromisoformat(recorded.label_window_end)
    window = features.select_window(labels, keys, start, end)
    frame = features.build_training_set(store, service, window, keys)
    digest = features.definition_digest(features.feature_service_definition(store, service))
    return frame, digest


def holdout_days(parameters: Mapping[str, str], frame: pd.DataFrame, timestamp: str) -> int:
    """The holdout length the run used: last label time minus the logged cutoff, in days."""
    if "holdout_cutoff" not in parameters:
        raise ReproductionError(
            "The run did not log `holdout_cutoff`, so its holdout split cannot be rebuilt."
        )
    cutoff = pd.Timestamp(parameters["holdout_cutoff"])
    span: pd.Timedelta = frame[timestamp].max() - cutoff
    return max(1, round(span / pd.Timedelta(days=1)))


def _retrain_checks(
    settings: Settings,
    recorded: RecordedVersion,
    frame: pd.DataFrame,
    keys: TrainingSetKeys,
    version: str,
) -> list[Check]:
    """Split, fit with the logged parameters and seed, score; compare metrics and predictions."""
    days = holdout_days(recorded.parameters, frame, keys.timestamp)
    split = training.split_by_time(frame, keys, days)
    parameters = _model_parameters(recorded.lineage.parameters)
    model = training.fit_model(split.train, keys, parameters)
    columns = training.feature_columns(split.holdout, keys)
    # Train metrics were computed on a seeded sample when the training rows were many.
    most = recorded.parameters.get("train_metric_rows")
    train = training.metric_rows(split.train, int(most) if most else None, parameters.seed)
    parts = (("train", train), ("holdout", split.holdout))
    scores = {
        group: training.predict_scores(model, part, columns, parameters.threads)
        for group, part in parts
    }
    checks = [compare_split(recorded.parameters, split)]
    for group, part in parts:
        recomputed = compute_metrics(part[keys.label].to_numpy(), scores[group])
        checks.append(compare_metrics(group, recorded.metrics, recomputed))
    registered_model = registry.load_version(
        settings.tracking_uri, settings.mlflow.model_name, version
    )
    registered: npt.NDArray[np.float64] | str
    try:
        needed = training.model_feature_names(registered_model)
        registered = training.predict_scores(
            registered_model, split.holdout, needed, parameters.threads
        )
    except training.TrainingDataError as error:
        registered = f"the registered model cannot score the rebuilt holdout: {error}"
    checks.append(compare_predictions(version, registered, scores["holdout"]))
    return checks


def _model_parameters(logged: Mapping[str, Any]) -> training.ModelParameters:
    """The fit's parameters as lineage logged them; an error naming any that are missing."""
    try:
        return training.ModelParameters(**logged)
    except TypeError as error:
        raise ReproductionError(
            f"The lineage's model parameters {sorted(logged)} do not fit this code's "
            f"ModelParameters ({error}); the model cannot be retrained as it was."
        ) from None
