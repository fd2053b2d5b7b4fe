"""Feast's online store: load it (materialize), check that it kept what was loaded, and read
which values an online read found."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops_flows.adapters.features import relative_sources_readable, source_path, view_ttl
from mlops_flows.errors import MlopsError

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore
    from feast.online_response import OnlineResponse


class OnlineStoreError(MlopsError):
    """The online store does not keep what was loaded into it."""


def materialize(store: FeatureStore, end: datetime, full: bool = False) -> list[str]:
    """Load the online store with the latest feature values up to `end`: from where the last
    run ended, or with `full` from `end` - TTL, whatever the registry says was loaded.

    Then a seeded sample of each view's recent entities is read back. An online store that
    lost values an earlier run loaded (a Redis restarted without persistence, a flushed
    cache) gets those views reloaded in full; the names of the views reloaded so."""
    with relative_sources_readable(store):
        return _materialize(store, end, full)


def _materialize(store: FeatureStore, end: datetime, full: bool) -> list[str]:
    views = [view for view in store.list_feature_views() if view.online]
    for view in views:
        if full or not view.materialization_intervals:
            # Feast starts a first incremental run at now - TTL; start at end - TTL instead,
            # so that an `end` in the past (a back-fill, a test) loads what it should.
            store.materialize(
                start_date=end - view_ttl(view), end_date=end, feature_views=[view.name]
            )
    store.materialize_incremental(end_date=end)
    lost = [view for view in views if _entities_not_found(store, view, end)]
    for view in lost:
        store.materialize(start_date=end - view_ttl(view), end_date=end, feature_views=[view.name])
    still = {view.name: _entities_not_found(store, view, end) for view in lost}
    if any(still.values()):
        raise OnlineStoreError(
            "The online store lacks values it was just loaded with: "
            + "; ".join(f"view '{name}', entities {ids[:5]}" for name, ids in still.items() if ids)
            + ". Check that the online store accepts writes and keeps them."
        )
    return [view.name for view in lost]


def lost_values_notice(views: list[str]) -> str:
    return (
        f"the online store had lost values of {', '.join(views)} (restarted without "
        "persistence, or flushed): reloaded in full"
    )


ONLINE_CHECK_SAMPLE = 20


def _entities_not_found(store: FeatureStore, view: Any, end: datetime) -> list[int]:
    """Entities with a source row inside the view's online window that the online store does
    not know, among a seeded sample (the latest one included); [] for non-file sources."""
    import pyarrow.parquet as pq
    from feast import FileSource

    source = view.batch_source
    if not isinstance(source, FileSource) or len(view.join_keys) != 1 or not view.features:
        return []
    (key,) = view.join_keys
    rows = pq.read_table(
        source_path(store, source), columns=[key, source.timestamp_field]
    ).to_pandas()
    stamps = pd.to_datetime(rows[source.timestamp_field], utc=True)
    # A day inside the window at each end: no entity at the edge of what Feast loads.
    end_stamp = pd.Timestamp(end)
    inside = rows[(stamps > end_stamp - view_ttl(view) + timedelta(days=1)) & (stamps < end_stamp)]
    if inside.empty:
        return []
    latest = inside.loc[stamps[inside.index].idxmax(), key]
    others = inside[key].drop_duplicates()
    sample = others.sample(min(ONLINE_CHECK_SAMPLE, len(others)), random_state=0).tolist()
    ids = sorted({int(latest), *map(int, sample)})
    feature = f"{view.name}:{view.features[0].name}"
    response = store.get_online_features(features=[feature], entity_rows=[{key: i} for i in ids])
    found = stored_values(response, {view.features[0].name})[view.features[0].name]
    return [i for i, stored in zip(ids, found, strict=True) if not stored]


def stored_values(response: OnlineResponse, names: Collection[str]) -> pd.DataFrame:
    """Per feature of `names` (those read from a stored view, `stored_feature_names`) and row
    of an online read: was a value stored, a null included?

    Not the field statuses: Feast's Redis store says PRESENT for a key it did not find. A row
    not found has no event timestamp.
    """
    return pd.DataFrame(
        {
            name: [stamp.seconds != 0 for stamp in result.event_timestamps]
            for name, result in zip(
                response.proto.metadata.feature_names.val, response.proto.results, strict=True
            )
            if name in names
        }
    )


def stored_feature_names(store: FeatureStore, service: FeatureService) -> frozenset[str]:
    """The service's features read from the online store (not computed on demand)."""
    batch_views = {view.name for view in store.list_feature_views()}
    return frozenset(
        feature.name
        for projection in service.feature_view_projections
        if projection.name in batch_views
        for feature in projection.features
    )
