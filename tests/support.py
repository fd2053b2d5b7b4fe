"""Helpers that build real workspaces: simulated sources, an applied Feast repo, MLflow."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from flows.settings import Settings
from flows.simulate import SimulatedData, SimulationSpec, simulate
from flows.workspace import Workspace


def unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Remove a variable for one test; monkeypatch.delenv alone records nothing when it is
    absent, so a value the code under test sets later would outlive the test."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


def use_workspace(monkeypatch: pytest.MonkeyPatch, home: Path) -> Settings:
    """Point every setting and library at a fresh workspace folder."""
    monkeypatch.setenv("MLOPS_HOME", str(home))
    settings = Settings()
    for name in ("MLOPS_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(name, settings.library_environment()[name])
    return settings


END = date(2026, 6, 30)
END_OF_DATA = datetime(2026, 6, 30, 23, 59, tzinfo=UTC)
SMALL = SimulationSpec(customers=600, days=84, end=END)


def seed_workspace(settings: Settings, spec: SimulationSpec = SMALL) -> SimulatedData:
    """Write simulated sources into the workspace and apply the Feast repository."""
    from flows import features

    workspace = Workspace(settings.home_resolved).ensure()
    data = simulate(spec)
    data.write(workspace.data)
    store = features.open_store(settings.features.repo_path)
    features.apply_repository(store, settings.features.repo_path)
    return data


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def snapshot(settings: Settings) -> dict[str, Any]:
    """Registry versions with their tags, aliases, and the Feast registry and online store."""
    from mlflow import MlflowClient

    from flows import registry

    client = MlflowClient(settings.tracking_uri)
    name = settings.mlflow.model_name
    versions = {
        str(v.version): dict(client.get_model_version(name, v.version).tags)
        for v in client.search_model_versions(f"name='{name}'")
    }
    feast = Workspace(settings.home_resolved).feast
    return {
        "aliases": registry.aliases(client, name),
        "versions": versions,
        "feast_registry": _digest(feast / "registry.db"),
        "online_store": _digest(feast / "online_store.db"),
    }


def wait_for_event(name: str, since: datetime, timeout: float = 30.0) -> list[Any]:
    """Events of that name the Prefect API has stored since `since`, polled until one arrives."""
    import time

    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    query = EventFilter(
        event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            found = client.read_events(filter=query, limit=50).events
            if found or time.monotonic() > deadline:
                return list(found)
            time.sleep(0.5)
