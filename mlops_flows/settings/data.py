"""The data the model is built from: the Feast repository and the GX suites."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from mlops_flows.settings.group import Group


class FeatureSettings(Group):
    """Where the Feast repository is and which FeatureService is the model's contract."""

    repo_path: Path = Field(
        default=Path("features"),
        description="Folder of the Feast feature repository (holds feature_store.yaml).",
    )
    feature_service: str = Field(
        default="",
        description="Versioned Feast FeatureService the model is trained and served with "
        "(the use case names it).",
    )
    entity_key: str = Field(
        default="", description="Join key of the entity (the use case names it)."
    )
    timestamp_column: str = Field(
        default="event_timestamp", description="Column holding the label (prediction) time."
    )
    label_column: str = Field(
        default="", description="Column holding the 0/1 label (the use case names it)."
    )
    population_view: str = Field(
        default="",
        description="Feature view whose source file lists the entities to score in batch, to "
        "monitor and to sample in the redeploy skew check (the use case names it).",
    )
    labels_path: Path | None = Field(
        default=None,
        description="Parquet file of labels (entity key, timestamp, label); empty means "
        "`data/labels.parquet` in the workspace, where `mlops simulate` writes it.",
    )
    store_yaml: Path | None = Field(
        default=None,
        description="Feast configuration file; empty means `feature_store.yaml` in the "
        "repository (profile local) or `production/feature_store.yaml` (profile production).",
    )
    project: str = Field(
        default="mlops",
        pattern=r"^[a-zA-Z0-9_]+$",
        description="Feast project of the production file (the local file names its own): "
        "rows in the SQL registry and keys in Redis are scoped by it.",
    )


class ExpectationSettings(Group):
    """Great Expectations suites kept as reviewable JSON files."""

    folder: Path = Field(
        default=Path("expectations"), description="Folder holding the GX suite JSON files."
    )
    training_suite: str = Field(
        default="training_set", description="Suite file (without .json) for training sets."
    )
    scoring_suite: str = Field(
        default="scoring_set", description="Suite file (without .json) for scoring sets."
    )
