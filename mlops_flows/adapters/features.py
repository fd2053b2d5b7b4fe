"""Feast access: apply the repository, check sources, build point-in-time training sets."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlops_flows.errors import MlopsError
from mlops_flows.logic.keys import TrainingSetKeys

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore


class FeatureRepoError(MlopsError):
    """The feature repository, a feature service or a source is missing or malformed."""


class LabelsError(MlopsError):
    """The label set is missing, empty or without features."""


# A truncated or half-copied parquet file has no footer; say what that usually means.
UNREADABLE_PARQUET_HINT = (
    "It is truncated, corrupt or still being written: write it again (re-run the export, or "
    "`mlops simulate` for the example), then start the run again."
)


def close_store(store: FeatureStore) -> None:
    """Close the connection pools of a SQL registry, which Feast never closes itself; a no-op
    for a file registry."""
    for engine in (getattr(store.registry, name, None) for name in ("write_engine", "read_engine")):
        if engine is not None:
            engine.dispose()


def open_store(repo_path: Path, store_yaml: Path | None = None) -> FeatureStore:
    """Open the Feast store of `repo_path`, configured by `store_yaml` or, when empty, by the
    file Feast itself picks (FEAST_FS_YAML_FILE_PATH, which the settings export, or
    `feature_store.yaml` in the repository)."""
    from feast import FeatureStore
    from feast.utils import get_default_yaml_file_path

    config = store_yaml or get_default_yaml_file_path(repo_path)
    if not config.is_file():
        raise FeatureRepoError(
            f"No Feast repository at {repo_path}: expected {config}. Point "
            "MLOPS_FEATURES__REPO_PATH at your feature repository (and MLOPS_FEATURES__STORE_YAML "
            "at its configuration file if it is not the profile's default)."
        )
    # Feast leaves an unset ${VAR} in place and then fails far from the cause.
    unresolved = sorted(set(re.findall(r"\$\{(\w+)\}", os.path.expandvars(config.read_text()))))
    if unresolved:
        raise FeatureRepoError(
            f"{config} needs the environment variable(s) {', '.join(unresolved)}, which are "
            "not set. `mlops` sets them from the MLOPS_* settings (MLOPS_PROFILE=production); "
            'for the Feast CLI, `eval "$(mlops features env)"` first.'
        )
    return FeatureStore(repo_path=str(repo_path.resolve()), fs_yaml_file=config)


def apply_repository(store: FeatureStore, repo_path: Path) -> list[str]:
    """Register every definition in the repository, like `feast apply`; return their names."""
    from feast import Entity, FeatureService, FeatureView, OnDemandFeatureView
    from feast.feature_view import DUMMY_ENTITY
    from feast.repo_contents import RepoContents
    from feast.repo_operations import extract_objects_for_apply_delete, get_repo_files

    kinds = (Entity, FeatureView, OnDemandFeatureView, FeatureService)
    found: dict[int, Any] = {}
    for path in get_repo_files(repo_path):
        module = _load_module(path)
        for value in vars(module).values():
            if isinstance(value, kinds):
                found.setdefault(id(value), value)
    objects = list(found.values())
    repo = RepoContents(
        projects=[],
        data_sources=[
            view.batch_source
            for view in objects
            if isinstance(view, FeatureView) and view.batch_source is not None
        ],
        # Feast's own placeholder for entity-less views, as `feast apply` adds it: left out, a
        # second apply would delete the one the first created, and serving would fail.
        entities=[obj for obj in objects if isinstance(obj, Entity)] + [DUMMY_ENTITY],
        feature_views=[obj for obj in objects if type(obj) is FeatureView],
        on_demand_feature_views=[obj for obj in objects if isinstance(obj, OnDemandFeatureView)],
        stream_feature_views=[],
        label_views=[],
        feature_services=[obj for obj in objects if isinstance(obj, FeatureService)],
        permissions=[],
    )
    to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
        store.project, store.registry, repo
    )
    store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    return sorted(obj.name for obj in objects)


def _load_module(path: Path) -> Any:
    # A fresh module each time: definitions read MLOPS_HOME when they are executed.
    spec = importlib.util.spec_from_file_location(f"feature_repo_{uuid.uuid4().hex}", path)
    if spec is None or spec.loader is None:
        raise FeatureRepoError(f"Cannot import feature definitions from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_feature_service(store: FeatureStore, name: str) -> FeatureService:
    """The named FeatureService, or an error listing the ones that exist."""
    from feast.errors import FeatureServiceNotFoundException

    try:
        return store.get_feature_service(name)
    except FeatureServiceNotFoundException:
        known = sorted(service.name for service in store.list_feature_services())
        raise FeatureRepoError(
            f"Feature service '{name}' is not in the Feast registry (known: "
            f"{', '.join(known) or 'none'}). Run `mlops features apply`, or set "
            "MLOPS_FEATURES__FEATURE_SERVICE to one of the known names."
        ) from None


def feature_service_definition(store: FeatureStore, service: FeatureService) -> dict[str, Any]:
    """A canonical description of what the service computes: views, schemas, TTLs, sources."""
    batch_views = {view.name: view for view in store.list_feature_views()}
    on_demand = {view.name: view for view in store.list_on_demand_feature_views()}
    views: list[dict[str, Any]] = []
    for projection in service.feature_view_projections:
        features = [{"name": f.name, "dtype": str(f.dtype)} for f in projection.features]
        view: dict[str, Any] = {"name": projection.name, "features": features}
        if projection.name in batch_views:
            batch = batch_views[projection.name]
            view["ttl_seconds"] = int(batch.ttl.total_seconds()) if batch.ttl else 0
            view["entities"] = sorted(batch.entities)
            if batch.batch_source is not None:
                view["source"] = batch.batch_source.name
                view["timestamp_field"] = batch.batch_source.timestamp_field
        elif projection.name in on_demand:
            transformation = on_demand[projection.name].feature_transformation
            view["transformation"] = getattr(transformation, "udf_string", "")
        views.append(view)
    return {"name": service.name, "views": sorted(views, key=lambda v: v["name"])}


def definition_digest(definition: dict[str, Any]) -> str:
    """sha256 of a canonical JSON rendering."""
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_sources(store: FeatureStore, service: FeatureService) -> None:
    """Fail early, naming file and column, when a source lacks what a feature view reads."""
    import pyarrow.parquet as pq
    from feast import FileSource

    batch_views = {view.name: view for view in store.list_feature_views()}
    for projection in service.feature_view_projections:
        view = batch_views.get(projection.name)  # on-demand views read other views, not files
        if view is None or not isinstance(view.batch_source, FileSource):
            continue
        source = view.batch_source
        path = source_path(store, source)
        if not path.is_file():
            raise FeatureRepoError(
                f"Source '{source.name}' of feature view '{view.name}' reads {path}, which does "
                "not exist. Run `mlops simulate` or put your parquet file there."
            )
        try:
            columns = set(pq.read_schema(path).names)
        except Exception as error:
            raise FeatureRepoError(
                f"Source file {path} of feature view '{view.name}' is not readable parquet "
                f"({type(error).__name__}: {error}). {UNREADABLE_PARQUET_HINT}"
            ) from error
        needed = {f.name for f in view.schema} | set(view.join_keys) | {source.timestamp_field}
        missing = sorted(needed - columns)
        if missing:
            raise FeatureRepoError(
                f"Source file {path} of feature view '{view.name}' lacks column(s) "
                f"{', '.join(missing)} (found: {', '.join(sorted(columns))}). Fix the upstream "
                "export or the feature view's schema."
            )


def read_labels(path: Path, keys: TrainingSetKeys) -> pd.DataFrame:
    """Read the label set and check it has the key, timestamp and label columns and rows."""
    if not path.is_file():
        raise LabelsError(
            f"No label file at {path}. Run `mlops simulate` or set MLOPS_FEATURES__LABELS_PATH."
        )
    try:
        labels = pd.read_parquet(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a broken file
        raise LabelsError(
            f"Label file {path} is not readable parquet ({type(error).__name__}: {error}). "
            f"{UNREADABLE_PARQUET_HINT}"
        ) from error
    missing = [c for c in (keys.entity_key, keys.timestamp, keys.label) if c not in labels.columns]
    if missing:
        raise LabelsError(
            f"Label file {path} lacks column(s) {', '.join(missing)} (found: "
            f"{', '.join(labels.columns)})."
        )
    if labels.empty:
        raise LabelsError(f"The label file {path} has no rows.")
    labels[keys.timestamp] = pd.to_datetime(labels[keys.timestamp], utc=True)
    return labels


def select_window(
    labels: pd.DataFrame, keys: TrainingSetKeys, start: datetime, end: datetime
) -> pd.DataFrame:
    """Label rows with start <= timestamp <= end; an error when there are none."""
    stamps = labels[keys.timestamp]
    window = labels[(stamps >= pd.Timestamp(start)) & (stamps <= pd.Timestamp(end))]
    if window.empty:
        span = f"{stamps.min()} to {stamps.max()}" if len(labels) else "no rows at all"
        raise LabelsError(
            f"No label rows between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} (the label "
            f"file holds {span}). Choose an `as_of` inside the labelled period."
        )
    return window.reset_index(drop=True)


def feature_names(service: FeatureService) -> list[str]:
    """The service's feature columns, in the order it lists them."""
    return [f.name for p in service.feature_view_projections for f in p.features]


def retrieve(
    store: FeatureStore,
    service: FeatureService,
    entities: pd.DataFrame,
    entity_key: str,
    timestamp: str,
) -> pd.DataFrame:
    """Point-in-time features of every entity row: all rows kept, in (timestamp, key) order,
    the entity frame's columns first, then the service's features."""
    with relative_sources_readable(store):
        frame: pd.DataFrame = store.get_historical_features(
            entity_df=entities, features=service
        ).to_df()
    frame[timestamp] = pd.to_datetime(frame[timestamp], utc=True).astype("datetime64[ns, UTC]")
    if len(frame) != len(entities):
        raise FeatureRepoError(
            f"The point-in-time join returned {len(frame)} rows for {len(entities)} entity "
            "rows; the offline store must keep every row (use the DuckDB offline store)."
        )
    # DuckDB does not keep the entity frame's order.
    frame = frame.sort_values([timestamp, entity_key], kind="stable").reset_index(drop=True)
    return frame[[*entities.columns, *feature_names(service)]]


def build_training_set(
    store: FeatureStore, service: FeatureService, labels: pd.DataFrame, keys: TrainingSetKeys
) -> pd.DataFrame:
    """Point-in-time join of the service's features onto every label row, in key order. The
    label file's request-time columns (what the service's on-demand views take from a request)
    go to Feast with the rows; the training set holds the features they computed."""
    requested = request_fields(store, service)
    absent = [name for name in requested if name not in labels.columns]
    if absent:
        raise LabelsError(
            f"The FeatureService '{service.name}' computes features from request-time value(s) "
            f"{', '.join(absent)}, which the label file lacks (its columns: "
            f"{', '.join(map(str, labels.columns))}). Add them to each label row: the values a "
            "request carried at that time."
        )
    entities = labels[[keys.entity_key, keys.timestamp, keys.label, *requested]]
    check_key_type(store, entities)
    frame = retrieve(store, service, entities, keys.entity_key, keys.timestamp)
    _check_feature_coverage(frame, store, service, keys)
    return frame.drop(columns=requested)


def request_fields(store: FeatureStore, service: FeatureService) -> list[str]:
    """The fields the service's on-demand views read from the request, not from a view."""
    on_demand = {view.name: view for view in store.list_on_demand_feature_views()}
    return sorted(
        {
            field.name
            for projection in service.feature_view_projections
            if projection.name in on_demand
            for request in on_demand[projection.name].source_request_sources.values()
            for field in request.schema
        }
    )


def _check_feature_coverage(
    frame: pd.DataFrame, store: FeatureStore, service: FeatureService, keys: TrainingSetKeys
) -> None:
    batch_views = {view.name: view for view in store.list_feature_views()}
    for projection in service.feature_view_projections:
        view = batch_views.get(projection.name)
        if view is None:
            continue
        names = [f.name for f in projection.features]
        uncovered = frame[frame[names].isna().all(axis=1)]
        if not uncovered.empty:
            first = uncovered.iloc[0]
            why = _why_uncovered(store, view, uncovered[keys.timestamp])
            raise LabelsError(
                f"{len(uncovered)} of {len(frame)} label rows have no '{view.name}' features "
                f"within its TTL of {view.ttl} (first: {keys.entity_key}={first[keys.entity_key]} "
                f"at {first[keys.timestamp]}). {why}"
                "Labels need feature rows for the same entity no older than the TTL: check the "
                "label window and the source files."
            )


def _why_uncovered(store: FeatureStore, view: Any, stamps: pd.Series) -> str:
    """What the view's source file says about label rows it does not cover: empty, too old
    for them, or the labels dated after the present. Empty for sources that are not files."""
    from feast import FileSource

    notes = []
    future = int((stamps > pd.Timestamp.now(tz="UTC")).sum())
    if future:
        notes.append(f"{future} of them are dated in the future (check their timestamps).")
    source = view.batch_source
    path = source_path(store, source) if isinstance(source, FileSource) else None
    if path is not None and path.is_file():
        column = pd.read_parquet(path, columns=[source.timestamp_field])
        times = pd.to_datetime(column[source.timestamp_field], utc=True)
        if times.empty:
            notes.append(f"Its source {path} has no rows.")
        elif times.max() < stamps.min() - view_ttl(view):
            age = stamps.min() - times.max()
            notes.append(
                f"The newest row of its source {path} is from {times.max()}, "
                f"{age.days} days before the first of them: the source is stale."
            )
    return " ".join(notes) + (" " if notes else "")


def check_key_type(store: FeatureStore, labels: pd.DataFrame) -> None:
    """Label entity ids of the type the Feast entity declares (an integer entity and text
    ids would end in a type error deep inside the offline store)."""
    from feast.value_type import ValueType

    wanted = {
        ValueType.INT32: (pd.api.types.is_integer_dtype, "integers"),
        ValueType.INT64: (pd.api.types.is_integer_dtype, "integers"),
        ValueType.STRING: (pd.api.types.is_string_dtype, "text"),
    }
    for entity in store.list_entities():
        column = entity.join_key
        if column not in labels.columns or entity.value_type not in wanted:
            continue
        fits, kind = wanted[entity.value_type]
        if not fits(labels[column].dtype):
            raise LabelsError(
                f"Entity ids in label column '{column}' are {labels[column].dtype}, but the "
                f"Feast entity '{entity.name}' declares {entity.value_type.name}: write them "
                f"as {kind}."
            )


def frame_digest(frame: pd.DataFrame) -> str:
    """sha256 of a frame's values, columns and dtypes (row order matters)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([[c, str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def entity_rows_digest(frame: pd.DataFrame, keys: TrainingSetKeys) -> str:
    """sha256 of the label rows alone (entity key, timestamp, label), whatever their order
    and timestamp resolution: a label window and the training set built on it give the same."""
    rows = frame[[keys.entity_key, keys.timestamp, keys.label]].copy()
    rows[keys.timestamp] = pd.to_datetime(rows[keys.timestamp], utc=True).astype(
        "datetime64[ns, UTC]"
    )
    ordered = rows.sort_values([keys.timestamp, keys.entity_key, keys.label], kind="stable")
    return frame_digest(ordered.reset_index(drop=True))


def view_ttl(view: Any) -> timedelta:
    """How far back the view's values count (a year for a view without a TTL)."""
    return view.ttl or timedelta(days=365)


def source_path(store: FeatureStore, source: Any) -> Path:
    """The file a file source reads, resolved as Feast resolves it: a relative path is relative
    to the repository, not to the folder a command runs in."""
    from feast.infra.offline_stores.file_source import FileSource

    return Path(FileSource.get_uri_for_file_path(store.repo_path, source.path))


def relative_sources_readable(store: FeatureStore) -> contextlib.AbstractContextManager[Any]:
    """Feast's DuckDB store reads a file source's relative path against the working folder
    (in retrieval and materialization), where Feast's own file handling, and this project,
    read it against the repository: when a source is relative, Feast runs in the repository's
    folder for the block."""
    from feast import FileSource

    relative = any(
        isinstance(view.batch_source, FileSource) and not Path(view.batch_source.path).is_absolute()
        for view in store.list_feature_views()
    )
    return contextlib.chdir(store.repo_path) if relative else contextlib.nullcontext()
