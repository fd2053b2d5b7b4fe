"""State-changing commands run twice leave the state that running them once leaves."""

from __future__ import annotations

from typing import Any

import pytest

from flows import features
from flows.settings import Settings
from tests.support import seed_workspace

pytestmark = pytest.mark.integration


def _feast_objects(settings: Settings) -> dict[str, Any]:
    """Every object in the Feast registry, by kind and name (Feast's equality leaves out the
    timestamps, which every apply sets anew, as `feast apply` does)."""
    store = features.open_store(settings.features.repo_path)
    registry, project = store.registry, store.project
    listed = {
        "entities": registry.list_entities(project, allow_cache=False),
        "feature_views": registry.list_feature_views(project, allow_cache=False),
        "on_demand_feature_views": registry.list_on_demand_feature_views(
            project, allow_cache=False
        ),
        "feature_services": registry.list_feature_services(project, allow_cache=False),
    }
    return {kind: {obj.name: obj for obj in objects} for kind, objects in listed.items()}


def test_features_apply_twice_and_three_times_keeps_the_registry(workspace: Settings) -> None:
    seed_workspace(workspace)
    once = _feast_objects(workspace)
    # Feast's placeholder entity for entity-less views: serving looks it up on every read.
    assert "__dummy" in once["entities"]

    store = features.open_store(workspace.features.repo_path)
    for _ in range(2):
        features.apply_repository(store, workspace.features.repo_path)
        assert _feast_objects(workspace) == once
