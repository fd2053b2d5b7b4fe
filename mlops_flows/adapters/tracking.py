"""MLflow tracking: reach the store, and log one training run with everything it needs."""

from __future__ import annotations

import importlib.metadata
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_flows.errors import MlopsError
from mlops_flows.ops.lineage import file_digest

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from sklearn.pipeline import Pipeline

# The one file read from a version's artifact: its skops serialization (MLflow's file name).
# Its MLmodel file (serialization format, trusted types, code path) is never read to load it.
MODEL_FILE = "model.skops"
# Types a skops-saved model of this project's pipeline holds beyond those skops trusts by
# default. Held here, never read from an artifact: loading refuses any other type, so a
# tampered or foreign artifact cannot run code (a test keeps this list true to the pipeline).
SKOPS_TRUSTED_TYPES = ["sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"]
# The model's runtime needs, pinned from this environment: inferring them costs ~10 s a model.
MODEL_REQUIREMENTS = ("mlflow", "scikit-learn", "skops", "pandas", "numpy", "scipy")
SCHEMA_SAMPLE_ROWS = 1000  # rows MLflow reads to infer a dataset's schema, when that is exact
REFERENCE_ROWS = 5000  # seeded sample of the training set kept as the drift reference


class TrackingStoreError(MlopsError):
    """The MLflow tracking store cannot be reached or written."""


class TrackingServerDownError(TrackingStoreError):
    """The MLflow tracking server does not answer, before or during a run."""


START_SERVER_HINT = (
    "Start it (`mlflow server --backend-store-uri <database> --host <host> --port <port>`) and "
    "wait until its /health answers, or unset MLOPS_MLFLOW__TRACKING_URI to use the local "
    "store in the workspace."
)


def pip_requirements() -> list[str]:
    """Exact versions of the packages a served model imports."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in MODEL_REQUIREMENTS]


def connect(tracking_uri: str, experiment: str, artifact_root: Path) -> str:
    """Point MLflow at the store, create the experiment if needed; return its id."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if tracking_uri.startswith(("http://", "https://")):
        _probe_server(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        _create_local_store(tracking_uri, artifact_root)
        found = mlflow.get_experiment_by_name(experiment)
        if found is not None:
            return str(found.experiment_id)
        location = None if tracking_uri.startswith("http") else artifact_root.as_uri()
        return str(mlflow.create_experiment(experiment, artifact_location=location))
    except MlflowException as error:
        raise TrackingStoreError(
            f"MLflow store {tracking_uri} refused the experiment '{experiment}': {error.message}"
        ) from error
    except Exception as error:  # SQLAlchemy/OS errors for an unusable store
        raise TrackingStoreError(
            f"MLflow store {tracking_uri} is not usable ({type(error).__name__}: {error}). "
            "Check MLOPS_MLFLOW__TRACKING_URI and that the workspace is writable."
        ) from error


def local_artifact_root(tracking_uri: str) -> str | None:
    """Where experiments of a SQLite store keep artifacts: `artifacts` beside the database.
    None for a server (it decides) or another store (MLflow's own default applies)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()


def _create_local_store(tracking_uri: str, artifact_root: Path) -> None:
    """Create a new SQLite store with its `Default` experiment in the workspace; MLflow alone
    would give it `mlruns` in whatever folder the first command ran from."""
    path = tracking_uri.removeprefix("sqlite:///")
    if not tracking_uri.startswith("sqlite:///") or Path(path).exists():
        return
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    SqlAlchemyStore(tracking_uri, artifact_root.as_uri()).engine.dispose()


def _probe_server(tracking_uri: str, timeout: float = 5.0) -> None:
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - configured
            if response.status == 200:
                return
    except (urllib.error.URLError, OSError) as error:
        raise TrackingServerDownError(
            f"MLflow tracking server {tracking_uri} is not reachable ({error}): nothing was "
            f"trained or logged. {START_SERVER_HINT}"
        ) from error
    raise TrackingServerDownError(
        f"MLflow tracking server {tracking_uri} is not healthy ({url}). {START_SERVER_HINT}"
    )


@dataclass(frozen=True)
class RunRecord:
    """Everything one training run logs."""

    run_name: str
    tags: dict[str, str]
    parameters: dict[str, Any]
    metrics: dict[str, float]
    figures: dict[str, Figure]
    documents: dict[str, dict[str, Any]]
    training_set: pd.DataFrame
    training_set_source: str
    training_set_digest: str
    label_column: str
    model: Pipeline
    features: list[str]
    seed: int
    started_at_ms: int  # when the work began: the run's duration covers it, not just logging


@dataclass(frozen=True)
class LoggedRun:
    """Where a logged run and its model are."""

    run_id: str
    model_uri: str
    model_sha256: str  # of the model file as the store holds it (tag mlops.model_sha256)


def sampled_schema(frame: pd.DataFrame) -> Any | None:
    """The schema MLflow infers for a frame, from a sample of rows; None when only all rows
    can tell.

    MLflow looks at every value (missing values, the types in text columns): 15 s of a 100k-row
    training run under a profiler. Checked vectorised instead: with no missing value and only
    `str` in text columns, the dtypes and a sample decide the schema."""
    from mlflow.models import infer_signature

    text = [column for column in frame.columns if frame[column].dtype == object]
    uniform = not frame.isna().to_numpy().any() and all(
        pd.api.types.infer_dtype(frame[column], skipna=False) == "string" for column in text
    )
    return infer_signature(frame.head(SCHEMA_SAMPLE_ROWS)).inputs if uniform else None


def training_dataset(frame: pd.DataFrame, source: str, label: str, digest: str) -> Any:
    """The training set as an MLflow dataset, its schema from `sampled_schema` when it has one."""
    from mlflow.data.pandas_dataset import PandasDataset
    from mlflow.data.sources import LocalArtifactDatasetSource  # made at import time

    schema = sampled_schema(frame)

    class SampledSchemaDataset(PandasDataset):  # type: ignore[misc]  # MLflow: not analysed
        @property
        def schema(self) -> Any:
            return schema

    kind = PandasDataset if schema is None else SampledSchemaDataset
    return kind(
        frame,
        # Explicit: a bare path matches two registered source types and MLflow warns.
        source=LocalArtifactDatasetSource(source),
        targets=label,
        name="training_set",
        digest=digest[:36],
    )


def log_training_run(experiment_id: str, record: RunRecord) -> LoggedRun:
    """Log params, metrics, plots, dataset, lineage documents, drift reference and the model."""
    import mlflow
    from mlflow.exceptions import MlflowException

    tracking_uri = mlflow.get_tracking_uri()
    run_id: str | None = None
    try:
        with _start_run(experiment_id, record) as run:
            run_id = run.info.run_id
            model_uri = _log_contents(record)
            digest = _stored_model_digest(model_uri)
    except (MlflowException, OSError) as error:  # requests' errors are OSErrors
        run = f"run {run_id}" if run_id else "a new run"
        left = "No model version was registered; the run may stay unfinished on the server."
        down = server_stopped(tracking_uri, error, f"logging {run}", left)
        if down is None:
            raise
        raise down from error
    return LoggedRun(run_id=run.info.run_id, model_uri=model_uri, model_sha256=digest)


def _stored_model_digest(model_uri: str) -> str:
    """The sha256 of the model file read back from the store: what loading will verify."""
    import tempfile

    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="mlops-model-") as folder:
        path = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder)
        return file_digest(Path(path) / MODEL_FILE)


def _start_run(experiment_id: str, record: RunRecord) -> Any:
    """`mlflow.start_run`, with the start time of the work (it takes none of its own)."""
    import mlflow
    from mlflow.tracking.context.registry import resolve_tags

    created = mlflow.MlflowClient().create_run(
        experiment_id,
        start_time=record.started_at_ms,
        tags=resolve_tags(),  # the source, user and git tags start_run would add
        run_name=record.run_name,
    )
    return mlflow.start_run(run_id=created.info.run_id)


def server_stopped(
    tracking_uri: str, error: Exception, doing: str, left: str
) -> TrackingServerDownError | None:
    """The error to raise for `error`, raised while `doing` something, if the configured
    server no longer answers; None if it answers (something else failed)."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    try:
        _probe_server(tracking_uri, timeout=2.0)
    except TrackingServerDownError:
        return TrackingServerDownError(
            f"MLflow tracking server {tracking_uri} stopped answering while {doing} "
            f"({type(error).__name__}: {str(error)[:160]}...). {left} {START_SERVER_HINT} "
            "Then train again."
        )
    return None


def _log_contents(record: RunRecord) -> str:
    """Everything of a run inside the active MLflow run; return the model's URI."""
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tags(record.tags)
    mlflow.log_params({k: str(v)[:6000] for k, v in record.parameters.items()})
    mlflow.log_metrics(record.metrics)
    dataset = training_dataset(
        record.training_set,
        record.training_set_source,
        record.label_column,
        record.training_set_digest,
    )
    mlflow.log_input(dataset, context="training")
    for path, figure in record.figures.items():
        mlflow.log_figure(figure, path)
    for path, document in record.documents.items():
        mlflow.log_dict(document, path)
    _log_reference(record)
    example = record.training_set[record.features].head(5)
    signature = infer_signature(example, np.zeros(len(example), dtype="float64"))
    info = mlflow.sklearn.log_model(
        record.model,
        name="model",
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        serialization_format="skops",
        skops_trusted_types=SKOPS_TRUSTED_TYPES,
        pyfunc_predict_fn="predict_proba",
    )
    return str(info.model_uri)


def _log_reference(record: RunRecord) -> None:
    import tempfile

    import mlflow

    rows = min(REFERENCE_ROWS, len(record.training_set))
    reference = record.training_set.sample(n=rows, random_state=record.seed)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "reference.parquet"
        reference.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path="reference")
