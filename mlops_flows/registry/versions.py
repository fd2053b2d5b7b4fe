"""The governed registry: versions, the `challenger` and `champion` aliases, status tags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_flows import vocabulary
from mlops_flows.adapters.tracking import MODEL_FILE, SKOPS_TRUSTED_TYPES
from mlops_flows.errors import MlopsError
from mlops_flows.vocabulary import Status, Tag

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from sklearn.pipeline import Pipeline

# The aliases (each named like the status of the version it points at).
CHAMPION = str(Status.CHAMPION)
CHALLENGER = str(Status.CHALLENGER)


class NoChampionError(MlopsError):
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


class UngovernedChampionError(NoChampionError):
    """`champion` points at a version the audit history did not make champion last: the
    alias was moved around governance."""

    def __init__(self, name: str, version: str, recorded: str | None) -> None:
        self.version = version
        last = (
            f"the audit history's last champion move made v{recorded} champion"
            if recorded
            else "the audit history records no champion move"
        )
        repair = f"`mlops rollback --to {recorded}`" if recorded else "`mlops rollback --to <v>`"
        super().__init__(
            f"`{CHAMPION}` of '{name}' points at v{version}, but {last}: the alias was moved "
            f"outside governance (or that move is not recorded yet). v{version} is not used. "
            f"Restore the governed champion with {repair}, or promote through the flows and "
            "`mlops approve`."
        )


def require_champion(client: MlflowClient, name: str, tracking_uri: str) -> str:
    """The champion's version if governance put it there (`check_governed`), or an error that
    says how to get one."""
    version = champion_version(client, name)
    if version is None:
        raise no_champion(name, tracking_uri)
    check_governed(client, name, version)
    return version


def check_governed(client: MlflowClient, name: str, version: str) -> None:
    """An UngovernedChampionError unless the last champion move of the audit history (a
    promotion or a rollback) that the governance key signed made `version` champion."""
    from mlops_flows.registry import history
    from mlops_flows.settings import Settings

    key = history.trusted_key(Settings())
    trusted = history.trusted(history.read_stored(client, name), key)
    moves = [entry for entry in trusted if entry.champion_move()]
    recorded = moves[-1].to_version if moves else None
    if recorded != version:
        raise UngovernedChampionError(name, version, recorded)


def no_champion(name: str, tracking_uri: str) -> NoChampionError:
    """The error for a model without a champion, saying how to get one."""
    return NoChampionError(
        f"Registered model '{name}' in {tracking_uri} has no `{CHAMPION}` version. Train "
        "one first (`mlops train`), or approve a challenger."
    )


class UntrustedModelError(MlopsError):
    """A version's artifact is not what a training run registered: no skops file, a type
    outside the trusted list, not a pipeline, or bytes changed since registration."""


def load_version(tracking_uri: str, name: str, version: str) -> Pipeline:
    """Load one registered version from the store named, whatever MLflow's process-wide
    tracking URI says (a worker runs flows of many workspaces): its MODEL_FILE only, if its
    digest is the one recorded at registration, with the trusted types held in code."""
    import tempfile

    import mlflow.artifacts
    from mlflow import MlflowClient

    from mlops_flows.ops.lineage import file_digest

    # The artifact's location from this store's registry: MLflow resolves a `models:/` URI
    # through the process-wide registry URI, whatever `registry_uri` it is given.
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    what = f"Model {name} v{version}"
    # The sha256 of MODEL_FILE as the store held it when the training run registered it.
    recorded = client.get_model_version(name, version).tags.get(Tag.MODEL_DIGEST)
    if not recorded:
        raise UntrustedModelError(
            f"{what} has no recorded digest ({Tag.MODEL_DIGEST}): no training run of this project "
            "registered it, so it is not loaded. Register models with `mlops train`."
        )
    location = client.get_model_version_download_uri(name, version)
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as folder:
        path = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=folder, tracking_uri=tracking_uri
            )
        )
        if not (path / MODEL_FILE).is_file():
            raise UntrustedModelError(
                f"{what} holds no {MODEL_FILE}: only skops models are loaded (the format its "
                "MLmodel file names is not read)."
            )
        found = file_digest(path / MODEL_FILE)
        if found != recorded:
            raise UntrustedModelError(
                f"{what} changed since it was registered: its {MODEL_FILE} has sha256 "
                f"{found[:16]}..., the registered one {recorded[:16]}.... It is not loaded."
            )
        return load_model_file(path / MODEL_FILE, what)


def load_model_file(path: Path, what: str) -> Pipeline:
    """A skops file holding a scikit-learn Pipeline of SKOPS_TRUSTED_TYPES and the types skops
    trusts by default; an UntrustedModelError for anything else (nothing of it is run)."""
    import skops.io
    from sklearn.pipeline import Pipeline

    untrusted = sorted(set(skops.io.get_untrusted_types(file=path)) - set(SKOPS_TRUSTED_TYPES))
    if untrusted:
        raise UntrustedModelError(
            f"{what} holds types outside the trusted list: {', '.join(untrusted[:5])}. It is "
            "not loaded (the list is held in code: "
            "mlops_flows.registry.versions.SKOPS_TRUSTED_TYPES)."
        )
    model = skops.io.load(path, trusted=SKOPS_TRUSTED_TYPES)
    if not isinstance(model, Pipeline):
        raise UntrustedModelError(
            f"{what} is a {type(model).__name__}, not a scikit-learn Pipeline with its "
            "preprocessing inside: it cannot score raw features."
        )
    return model


def load_champion(tracking_uri: str, name: str) -> Champion | None:
    """The champion model, pinned to the version read, or None before the first one."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    version = champion_version(client, name)
    if version is None:
        return None
    check_governed(client, name, version)
    run_id = str(client.get_model_version(name, version).run_id)
    return Champion(version=version, run_id=run_id, model=load_version(tracking_uri, name, version))


def read_facts(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    """A version's tags, with its record's fields (`mlops_flows.vocabulary`) among them."""
    return vocabulary.flatten(client.get_model_version(name, version).tags)


def record(client: MlflowClient, name: str, version: str, changes: Mapping[Tag, str]) -> None:
    """Record facts on a version: each searchable one as its tag, the others merged into its
    record (the tags of a version registered before the record existed stay as they are).
    Callers hold the registry lock, or are the version's only writer."""
    current = client.get_model_version(name, version).tags
    merged = vocabulary.record_of(current) | {str(key): value for key, value in changes.items()}
    for key, value in vocabulary.as_tags(merged).items():
        if current.get(key) != value:
            client.set_model_version_tag(name, version, key, value)


def register_version(
    client: MlflowClient,
    name: str,
    model_uri: str,
    run_id: str,
    facts: dict[str, str],
    description: str = "",
) -> ModelVersion:
    """Create the registered model on first use (with the use case's one-line description),
    then a new version of it with these facts (`mlops_flows.vocabulary`)."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_registered_model(name, description=description or None)
    # An MLflow 3 server refuses a `models:/m-...` source without the logged model's id.
    model_id = model_uri.removeprefix("models:/") if model_uri.startswith("models:/m-") else None
    return client.create_model_version(
        name=name,
        source=model_uri,
        run_id=run_id,
        tags=vocabulary.as_tags(facts),
        model_id=model_id,
    )


def first_version_tagged(client: MlflowClient, name: str, tag: str, value: str) -> str | None:
    """The first version with a tag's value (e.g. `mlops.flow_run_id`: the version a flow run
    registered; `mlops.request_key`: one trained from a request), if any."""
    query = f"name='{name}' and tag.`{tag}`='{value}'"
    found = [str(version.version) for version in client.search_model_versions(query)]
    return min(found, key=int) if found else None


# How SQL stores word a unique-key collision (SQLite, PostgreSQL, MySQL).
_COLLISIONS = ("UNIQUE constraint", "duplicate key", "Duplicate entry")


def _set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point an alias at a version. MLflow's SQL store writes an alias by reading it, then
    inserting it when absent: two first writers at once collide on its unique key, and the
    second one's write must be an update, which a second try makes."""
    from mlflow.exceptions import MlflowException

    try:
        client.set_registered_model_alias(name, alias, version)
    except MlflowException as error:
        if not any(collision in str(error) for collision in _COLLISIONS):
            raise
        client.set_registered_model_alias(name, alias, version)


def record_outcome(
    client: MlflowClient, name: str, version: str, passed: bool, reason: str
) -> None:
    """Tag the gate outcome; a passing version becomes the `challenger`."""
    status = Status.CHALLENGER if passed else Status.REJECTED
    record(client, name, version, {Tag.STATUS: status, Tag.STATUS_REASON: reason})
    if passed:
        _set_alias(client, name, CHALLENGER, version)


def promote(client: MlflowClient, name: str, version: str, actor: str, reason: str) -> str | None:
    """Move `champion` to the version; return the previous champion's version."""
    previous = champion_version(client, name)
    _set_alias(client, name, CHAMPION, version)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    promoted = {
        Tag.STATUS: Status.CHAMPION,
        Tag.PROMOTED_AT: now,
        Tag.PROMOTED_BY: actor,
        Tag.PROMOTION_REASON: reason,
        Tag.PREVIOUS_CHAMPION: previous or "none",
    }
    record(client, name, version, promoted)
    if aliases(client, name).get(CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    if previous is not None and previous != version:
        record(client, name, previous, {Tag.STATUS: Status.RETIRED})
    return previous
