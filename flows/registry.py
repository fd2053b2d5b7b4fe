"""The governed registry: versions, the `challenger` and `champion` aliases, status tags."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from sklearn.pipeline import Pipeline

CHAMPION = "champion"
CHALLENGER = "challenger"


class NoChampionError(Exception):
    """No registered version carries the `champion` alias."""


@dataclass(frozen=True)
class Champion:
    """The version that serves, and its loaded model."""

    version: str
    run_id: str
    model: Pipeline


def aliases(client: MlflowClient, name: str) -> dict[str, str]:
    """Alias -> version (as text) of a registered model; empty before the model exists."""
    from mlflow.exceptions import MlflowException

    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise
    # search_model_versions returns empty aliases: read them from the registered model.
    return {alias: str(version) for alias, version in model.aliases.items()}


def champion_version(client: MlflowClient, name: str) -> str | None:
    """The version the `champion` alias points at, if the model and alias exist."""
    return aliases(client, name).get(CHAMPION)


def require_champion(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The champion's version, or an error that says how to get one."""
    version = champion_version(client, name)
    if version is None:
        raise no_champion(name, tracking_uri)
    return version


def no_champion(name: str, tracking_uri: str) -> NoChampionError:
    """The error for a model without a champion, saying how to get one."""
    return NoChampionError(
        f"Registered model '{name}' in {tracking_uri} has no `{CHAMPION}` version. Train "
        "one first (`mlops train`), or approve a challenger."
    )


def load_version(tracking_uri: str, name: str, version: str) -> Pipeline:
    """Load one registered version (skops: trusted types only) from the store named, whatever
    MLflow's process-wide tracking URI says (a worker runs flows of many workspaces)."""
    import tempfile

    import mlflow.artifacts
    import mlflow.sklearn
    from mlflow import MlflowClient

    # The artifact's location from this store's registry: MLflow resolves a `models:/` URI
    # through the process-wide registry URI, whatever `registry_uri` it is given.
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    location = client.get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as folder:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=location, dst_path=folder, tracking_uri=tracking_uri
        )
        return mlflow.sklearn.load_model(path)


def load_champion(tracking_uri: str, name: str) -> Champion | None:
    """The champion model, pinned to the version read, or None before the first one."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    version = champion_version(client, name)
    if version is None:
        return None
    run_id = str(client.get_model_version(name, version).run_id)
    return Champion(version=version, run_id=run_id, model=load_version(tracking_uri, name, version))


def register_version(
    client: MlflowClient, name: str, model_uri: str, run_id: str, tags: dict[str, str]
) -> ModelVersion:
    """Create the registered model on first use, then a new version of it."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(
            name, description="Churn classifier of the subscription business."
        )
    # An MLflow 3 server refuses a `models:/m-...` source without the logged model's id.
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    return client.create_model_version(
        name=name, source=model_uri, run_id=run_id, tags=tags, model_id=model_id
    )


def first_version_tagged(client: MlflowClient, name: str, tag: str, value: str) -> str | None:
    """The first version with a tag's value (e.g. `mlops.flow_run_id`: the version a flow run
    registered; `mlops.request_key`: one trained from a request), if any."""
    query = f"name='{name}' and tag.`{tag}`='{value}'"
    found = [str(version.version) for version in client.search_model_versions(query)]
    return min(found, key=int) if found else None


def record_outcome(
    client: MlflowClient, name: str, version: str, passed: bool, reason: str
) -> None:
    """Tag the gate outcome; a passing version becomes the `challenger`."""
    client.set_model_version_tag(name, version, "status", CHALLENGER if passed else "rejected")
    client.set_model_version_tag(name, version, "status_reason", reason[:5000])
    if passed:
        client.set_registered_model_alias(name, CHALLENGER, version)


def promote(client: MlflowClient, name: str, version: str, actor: str, reason: str) -> str | None:
    """Move `champion` to the version; return the previous champion's version."""
    previous = champion_version(client, name)
    client.set_registered_model_alias(name, CHAMPION, version)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    for key, value in {
        "status": CHAMPION,
        "promoted_at": now,
        "promoted_by": actor,
        "promotion_reason": reason,
        "previous_champion": previous or "none",
    }.items():
        client.set_model_version_tag(name, version, key, value)
    if aliases(client, name).get(CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    if previous is not None and previous != version:
        client.set_model_version_tag(name, previous, "status", "retired")
    return previous
