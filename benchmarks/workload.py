"""Seeded data and prepared workspaces the stages share: simulated once per size per run."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from mlops_flows.examples.churn.simulate import SimulatedData, SimulationSpec, simulate

T = TypeVar("T")
END = date(2026, 6, 30)
KEY, TIMESTAMP, LABEL = "customer_id", "event_timestamp", "churned"


def label_rows_spec(customers: int) -> SimulationSpec:
    """Weekly activity and labels over 77 days: ten label rows per customer."""
    return SimulationSpec(customers=customers, days=77, end=END, activity_every_days=7)


SPECS = {
    "20k": label_rows_spec(2_000),
    "100k": label_rows_spec(10_000),
    "1M": label_rows_spec(100_000),
}


def timed(action: Callable[[], T]) -> tuple[float, T]:
    """Seconds an action took, and its result."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def merge_asof_baseline(data: SimulatedData) -> pd.DataFrame:
    """The lower bound of the build: one backward as-of join per feature view, then the ratios,
    in the project's column and row order."""
    frame = data.labels.sort_values(TIMESTAMP)
    for name, ttl in (("activity", timedelta(days=7)), ("profile", timedelta(days=60))):
        source = getattr(data, name).drop(columns="created").sort_values(TIMESTAMP)
        frame = pd.merge_asof(
            frame,
            source,
            on=TIMESTAMP,
            by=KEY,
            tolerance=pd.Timedelta(ttl),
            allow_exact_matches=True,
        )
    minutes = frame["minutes_7d"]
    frame["minutes_per_session"] = minutes / frame["sessions_7d"].clip(lower=1)
    frame["charge_per_hour_used"] = frame["monthly_charge"] / (minutes / 60.0 + 1.0)
    return frame.sort_values([TIMESTAMP, KEY], kind="stable").reset_index(drop=True)


@dataclass
class Workspace:
    """A workspace folder with simulated sources, the Feast repository applied and MLflow ready."""

    root: Path
    spec: SimulationSpec
    data: SimulatedData
    store: Any
    service: Any
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    trained: bool = False  # a champion is registered

    def activate(self) -> Any:
        """Point this process's settings and libraries at this workspace; return the settings."""
        from mlops_flows.settings import Settings

        os.environ["MLOPS_HOME"] = str(self.root)
        settings = Settings()
        settings.export_library_environment()
        return settings

    def baseline_frame(self) -> pd.DataFrame:
        """The merge_asof training set (cached: several stages read it)."""
        if "baseline" not in self.frames:
            self.frames["baseline"] = merge_asof_baseline(self.data)
        return self.frames["baseline"]


class Workspaces:
    """Workspaces by size under one temporary folder, each prepared on first use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._prepared: dict[str, Workspace] = {}

    def get(self, size: str) -> Workspace:
        if size not in self._prepared:
            self._prepared[size] = self._prepare(size, SPECS[size])
        return self._prepared[size]

    def _prepare(self, size: str, spec: SimulationSpec) -> Workspace:
        from mlops_flows.adapters import features, tracking
        from mlops_flows.ops.workspace import Workspace as Folders

        root = self.folder / f"workspace-{size}"
        os.environ["MLOPS_HOME"] = str(root)
        from mlops_flows.settings import Settings

        settings = Settings()
        settings.export_library_environment()
        folders = Folders(settings.home_resolved).ensure()
        data = simulate(spec)
        data.write(folders.data)
        store = features.open_store(settings.features.repo_path)
        features.apply_repository(store, settings.features.repo_path)
        service = features.get_feature_service(store, settings.features.feature_service)
        # A one-off cost per store (SQLite migrations, experiment), not part of any figure.
        tracking.connect(
            settings.tracking_uri, settings.mlflow.experiment, folders.mlflow_artifacts
        )
        return Workspace(settings.home_resolved, spec, data, store, service)
