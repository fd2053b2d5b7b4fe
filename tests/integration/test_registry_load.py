"""Loading a registered version reads the store it is given, not MLflow's process-wide one."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows import registry

pytestmark = pytest.mark.integration


def _store_with_one_version(folder: Path) -> str:
    import mlflow
    from mlflow import MlflowClient
    from sklearn.dummy import DummyClassifier

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("probe", artifact_location=(folder / "art").as_uri())
    model = DummyClassifier().fit([[0], [1]], [0, 1])
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=experiment) as run:
        info = mlflow.sklearn.log_model(
            model, name="model", serialization_format="skops", pip_requirements=[]
        )
    registry.register_version(client, "probe", info.model_uri, run.info.run_id, {})
    return uri


def test_a_version_loads_from_its_store_whatever_the_process_wide_uri(tmp_path: Path) -> None:
    import mlflow

    previous = mlflow.get_tracking_uri()
    try:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        store = _store_with_one_version(tmp_path / "a")
        # Another workspace's store is the process-wide one (a flow of it ran here before).
        mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'b' / 'mlflow.db'}")

        model = registry.load_version(store, "probe", "1")

        # The logged model: a prior-strategy dummy fitted on a tie predicts the first class.
        assert type(model).__name__ == "DummyClassifier"
        assert model.predict([[0], [1]]).tolist() == [0, 0]
    finally:
        mlflow.set_tracking_uri(previous)
