"""The columns of a label row the settings name: its key, its time and its label."""

from __future__ import annotations

from dataclasses import dataclass

from mlops_flows.settings import Settings


@dataclass(frozen=True)
class TrainingSetKeys:
    """Columns that identify a label row and hold the label."""

    entity_key: str
    timestamp: str
    label: str


def keys_of(settings: Settings) -> TrainingSetKeys:
    """The key, timestamp and label columns the settings name."""
    return TrainingSetKeys(
        settings.features.entity_key,
        settings.features.timestamp_column,
        settings.features.label_column,
    )
