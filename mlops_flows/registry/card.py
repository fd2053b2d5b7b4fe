"""A version's model card, written from what MLflow holds about it into its description."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_flows import vocabulary
from mlops_flows.logic.model_card import CardFacts, render

if TYPE_CHECKING:
    from mlflow import MlflowClient

# A version whose run recorded no card texts (trained before the use case said them).
UNRECORDED: dict[str, Any] = {
    "intended_use": "Not recorded with this version: its run holds no card.json.",
    "known_limits": [],
}


def refresh(client: MlflowClient, name: str, version: str) -> str:
    """Read the version's record from MLflow, write its card as the version's description,
    and return the markdown; no model is loaded."""
    model_version = client.get_model_version(name, version)
    run_id = str(model_version.run_id)
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory(prefix="mlops-card-") as folder:
        gates = _document(client, run_id, "gates.json", Path(folder))
        lineage = _document(client, run_id, "lineage.json", Path(folder))
        texts = UNRECORDED | (_document(client, run_id, "card.json", Path(folder)) or {})
        features = _signature(client, str(model_version.source), Path(folder))
        text_features = [feature for feature, kind in features if kind == "string"]
        values_seen = _values_seen(client, run_id, text_features, Path(folder))
    facts = CardFacts(
        model_name=name,
        version=str(version),
        run_id=run_id,
        version_tags=vocabulary.flatten(model_version.tags),
        metrics=dict(run.data.metrics),
        parameters=dict(run.data.params),
        gates=list(gates.get("results", [])) if gates else [],
        gates_passed=bool(gates["passed"]) if gates and "passed" in gates else None,
        lineage=lineage or {},
        features=features,
        values_seen=values_seen,
        intended_use=str(texts["intended_use"]),
        known_limits=[str(limit) for limit in texts["known_limits"]],
    )
    markdown = render(facts)
    client.update_model_version(name, version, description=markdown)
    return markdown


def _document(client: MlflowClient, run_id: str, path: str, folder: Path) -> dict[str, Any] | None:
    """A JSON artifact of the run, or None when the run has none."""
    from mlflow.exceptions import MlflowException

    try:
        local = client.download_artifacts(run_id, path, str(folder))
    except (MlflowException, OSError):
        return None
    document = json.loads(Path(local).read_text())
    return document if isinstance(document, dict) else None


def _signature(client: MlflowClient, source: str, folder: Path) -> list[tuple[str, str]]:
    """(name, type) of each model input, from the MLmodel file alone; empty without one."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    # MLflow 3 registers a logged model (`models:/m-<id>`), whose files sit at its own location.
    try:
        if source.startswith("models:/m-"):
            location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
        else:
            location = source
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{location.rstrip('/')}/MLmodel",
            dst_path=str(folder / "model"),
            tracking_uri=client.tracking_uri,
        )
    except (MlflowException, OSError):
        return []
    signature = Model.load(path).signature
    if signature is None:
        return []
    return [(str(item["name"]), str(item["type"])) for item in signature.inputs.to_dict()]


def _values_seen(
    client: MlflowClient, run_id: str, columns: list[str], folder: Path
) -> dict[str, list[str]]:
    """Values of text features in the run's seeded training sample (the drift reference)."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    if not columns:
        return {}
    try:
        local = client.download_artifacts(run_id, "reference/reference.parquet", str(folder))
    except (MlflowException, OSError):
        return {}
    sample = pd.read_parquet(local, columns=columns)
    return {column: sorted(map(str, sample[column].dropna().unique())) for column in columns}
