"""Hourly materialization: the online store holds the latest feature values."""

from __future__ import annotations

from datetime import UTC, datetime

from prefect import flow, get_run_logger

from mlops_flows.adapters import features, online_store
from mlops_flows.logic.times import to_utc
from mlops_flows.steps.start import start


@flow(name="materialize-features")
def materialize_features(end: datetime | None = None, full: bool = False) -> str:
    """Load feature values up to `end` (default now) into the online store; `full` reloads
    every view's TTL window (an online store that lost its data)."""
    settings = start(of_model=False).settings
    until = to_utc(end) if end else datetime.now(UTC)
    store = features.open_store(settings.features.repo_path)
    reloaded = online_store.materialize(store, until, full)
    if reloaded:
        get_run_logger().warning(online_store.lost_values_notice(reloaded))
    get_run_logger().info("Online store loaded up to %s", until.isoformat())
    return until.isoformat()
