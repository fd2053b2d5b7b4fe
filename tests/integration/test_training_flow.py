"""The training flow on real Feast, GX, scikit-learn, MLflow and a Prefect test server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlops_flows import vocabulary
from mlops_flows.flows.training_flow import TrainingOutcome, TrainingParameters, train_churn_model
from mlops_flows.ops.lineage import file_digest
from mlops_flows.registry import versions as registry
from mlops_flows.settings import Settings
from mlops_flows.vocabulary import Tag
from tests.support import snapshot

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture
def trained(
    champion_workspace: Settings, champion_home: tuple[Path, TrainingOutcome, TrainingOutcome]
) -> tuple[Settings, TrainingOutcome, TrainingOutcome]:
    """The shared workspace where v1 became champion and v2 was trained against it."""
    return champion_workspace, champion_home[1], champion_home[2]


def test_first_model_becomes_champion_on_absolute_gates(trained: Any) -> None:
    settings, first, _ = trained
    assert first.status == "champion"
    assert first.previous_champion is None
    assert "no champion yet" in json.dumps(_gates(settings, first.run_id))


def test_second_model_faces_the_champion_and_moves_the_alias(trained: Any) -> None:
    settings, first, second = trained
    assert second.status == "champion", second.gate_summary
    assert second.previous_champion == first.version
    assert snapshot(settings)["aliases"] == {"champion": second.version}
    gates = {row["gate"] for row in _gates(settings, second.run_id)["results"]}
    assert {"roc_auc", "log_loss", "calibration_error", "champion_comparison"} <= gates
    assert any(name.startswith("slice.") for name in gates)


def _gates(settings: Settings, run_id: str) -> dict[str, Any]:
    return dict(_load(settings, run_id, "gates.json"))


def test_champion_run_carries_params_metrics_plots_dataset_model_and_lineage(trained: Any) -> None:
    from mlflow import MlflowClient

    settings, _, second = trained
    client = MlflowClient(settings.tracking_uri)
    run = client.get_run(second.run_id)
    for prefix in ("train_", "holdout_", "champion_holdout_"):
        assert f"{prefix}roc_auc" in run.data.metrics
    for cost in ("cost_wall_seconds", "cost_cpu_seconds", "cost_peak_memory_mb"):
        assert run.data.metrics[cost] > 0
    # The run lasts as long as the work it records, not just its logging.
    duration = (run.info.end_time - run.info.start_time) / 1000
    assert duration >= run.data.metrics["cost_wall_seconds"]
    assert {"max_iter", "learning_rate", "seed", "window_start", "window_end"} <= set(
        run.data.params
    )
    for tag in (
        "code_commit",
        "code_dirty",
        "lock_digest",
        "feature_service",
        "feature_service_digest",
        "training_set_digest",
        "suite_digest",
        "seed",
    ):
        assert run.data.tags[f"lineage.{tag}"], tag
    assert len(run.data.tags["lineage.lock_digest"]) == 64
    artifacts = {a.path for a in client.list_artifacts(second.run_id, "plots")}
    assert artifacts == {
        f"plots/{n}.png"
        for n in ("roc_curve", "calibration", "confusion_matrix", "feature_importance")
    }
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == run.data.tags["lineage.training_set_digest"][:36]

    lineage = _load(settings, second.run_id, "lineage.json")
    assert lineage["feature_service"] == settings.features.feature_service
    assert lineage["training_set_rows"] > 0

    # The version keeps the searchable few; the run keeps them all.
    tags = client.get_model_version(settings.mlflow.model_name, second.version).tags
    assert len(tags) <= vocabulary.MAX_TAGS, sorted(tags)
    for name in (Tag.CODE_COMMIT, Tag.FEATURE_SERVICE, Tag.TRAINING_SET_DIGEST):
        assert tags[name] == run.data.tags[name]
    assert tags["metric.roc_auc"] == f"{run.data.metrics['holdout_roc_auc']:.4f}"


def _load(settings: Settings, run_id: str, path: str) -> Any:
    from mlflow import MlflowClient

    # This store, whatever MLflow's process-wide URI was left at by another test.
    local = MlflowClient(settings.tracking_uri).download_artifacts(run_id, path)
    return json.loads(Path(local).read_text())


def test_model_is_skops_with_pinned_requirements_signature_and_example(trained: Any) -> None:
    import mlflow
    from mlflow.models import Model

    settings, _, _ = trained
    uri, name = settings.tracking_uri, settings.mlflow.model_name
    # Through the artifact's own location: MLflow resolves `models:/` with the process-wide
    # registry URI whatever `registry_uri` says, and another test may have set that.
    client = mlflow.MlflowClient(uri, registry_uri=uri)
    version = client.get_model_version_by_alias(name, "champion").version
    folder = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(name, version), tracking_uri=uri
        )
    )
    info = Model.load(folder)
    # The digest loading verifies: that of the file the store holds.
    recorded = client.get_model_version(name, version).tags[Tag.MODEL_DIGEST]
    assert recorded == file_digest(folder / registry.MODEL_FILE)
    assert info.signature is not None
    assert info.saved_input_example_info is not None
    assert info.flavors["sklearn"]["serialization_format"] == "skops"
    lines = [line for line in (folder / "requirements.txt").read_text().splitlines() if line]
    assert {line.split("==")[0] for line in lines} >= {"scikit-learn", "skops", "mlflow"}
    assert all("==" in line for line in lines), lines
    model = mlflow.sklearn.load_model(str(folder))
    example = pd.DataFrame(info.load_input_example(str(folder)))
    scores = model.predict_proba(example)[:, 1]
    assert ((scores >= 0) & (scores <= 1)).all()


def test_gate_failure_registers_a_rejected_version_and_keeps_the_champion(
    trained: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _, second = trained
    before = snapshot(settings)
    monkeypatch.setenv("MLOPS_GATES__MIN_ROC_AUC", "0.999")
    # Another seed: the request of the champion again would train nothing.
    outcome = train_churn_model(TrainingParameters(reason="test-gate-failure", seed=1))
    after = snapshot(settings)
    assert outcome.status == "rejected"
    assert "roc_auc" in outcome.gate_summary
    assert after["aliases"] == before["aliases"] == {"champion": second.version}
    assert after["versions"][outcome.version]["status"] == "rejected"
    assert {v: after["versions"][v] for v in before["versions"]} == before["versions"]
    assert after["feast_registry"] == before["feast_registry"]


def test_every_experiment_keeps_its_artifacts_in_the_workspace(trained: Any) -> None:
    from mlflow import MlflowClient

    from mlops_flows.ops.workspace import Workspace

    settings = trained[0]
    root = Workspace(settings.home_resolved).mlflow_artifacts.as_uri()
    client = MlflowClient(settings.tracking_uri)
    locations = {found.name: found.artifact_location for found in client.search_experiments()}
    assert {"Default", "churn", "churn-audit"} <= set(locations)
    assert all(location.startswith(root) for location in locations.values()), locations
