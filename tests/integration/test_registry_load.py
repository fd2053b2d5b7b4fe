"""Loading a registered version: from the store it is given, not MLflow's process-wide one;
only its skops file, only with the digest recorded at registration, only trusted types."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import skops.io
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline

from mlops_flows.ops.lineage import file_digest
from mlops_flows.registry import versions as registry
from mlops_flows.vocabulary import Tag

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Store:
    uri: str
    artifacts: Path


class Payload:
    """What an attacker registers: unpickling it creates a file (here, harmless proof of
    code execution)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def _store(folder: Path) -> Store:
    folder.mkdir()
    return Store(f"sqlite:///{folder / 'mlflow.db'}", folder / "art")


def _register(store: Store, model: Any, serialization_format: str = "skops") -> str:
    """Log and register a model as `probe`, with the digest of its file as stored when there is
    a skops file (as the training flow does); the version."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(store.uri, registry_uri=store.uri)
    found = client.get_experiment_by_name("probe")
    experiment = (
        found.experiment_id
        if found
        else client.create_experiment("probe", artifact_location=store.artifacts.as_uri())
    )
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(store.uri)
    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            info = mlflow.sklearn.log_model(
                model, name="model", serialization_format=serialization_format, pip_requirements=[]
            )
        with tempfile.TemporaryDirectory() as folder:
            local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=folder))
            stored = [local / name for name in (registry.MODEL_FILE, "model.pkl")]
            digest = file_digest(next(path for path in stored if path.is_file()))
        # A `models:/` source is looked up in the process-wide tracking store.
        tags = {Tag.MODEL_DIGEST: digest}
        version = registry.register_version(client, "probe", info.model_uri, run.info.run_id, tags)
    finally:
        mlflow.set_tracking_uri(previous)
    return str(version.version)


def _pipeline() -> Pipeline:
    return Pipeline([("model", DummyClassifier())]).fit([[0], [1]], [0, 1])


def test_a_version_loads_from_its_store_whatever_the_process_wide_uri(tmp_path: Path) -> None:
    import mlflow

    store = _store(tmp_path / "a")
    version = _register(store, _pipeline())
    previous = mlflow.get_tracking_uri()
    try:
        # Another workspace's store is the process-wide one (a flow of it ran here before).
        (tmp_path / "b").mkdir()
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")

        model = registry.load_version(store.uri, "probe", version)
    finally:
        mlflow.set_tracking_uri(previous)
    # The logged model: a prior-strategy dummy fitted on a tie predicts the first class.
    assert type(model[-1]).__name__ == "DummyClassifier"
    assert model.predict([[0], [1]]).tolist() == [0, 0]


def test_a_pickled_model_is_refused_and_nothing_of_it_runs(tmp_path: Path) -> None:
    """Its MLmodel file says cloudpickle, which MLflow's own loader would follow."""
    store, marker = _store(tmp_path / "store"), tmp_path / "payload-ran"
    version = _register(store, Payload(marker), serialization_format="cloudpickle")

    with pytest.raises(registry.UntrustedModelError, match=r"holds no model\.skops: only skops"):
        registry.load_version(store.uri, "probe", version)
    assert not marker.exists()


def test_an_artifact_changed_after_registration_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path / "store")
    version = _register(store, _pipeline())
    (stored,) = store.artifacts.rglob(registry.MODEL_FILE)
    other = Pipeline([("model", DummyClassifier(strategy="most_frequent"))]).fit([[0]], [1])
    skops.io.dump(other, stored)

    with pytest.raises(registry.UntrustedModelError, match="changed since it was registered"):
        registry.load_version(store.uri, "probe", version)


def test_a_version_without_a_recorded_digest_is_refused(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    store = _store(tmp_path / "store")
    version = _register(store, _pipeline())
    client = MlflowClient(store.uri, registry_uri=store.uri)
    client.delete_model_version_tag("probe", version, Tag.MODEL_DIGEST)

    with pytest.raises(registry.UntrustedModelError, match="no recorded digest"):
        registry.load_version(store.uri, "probe", version)
