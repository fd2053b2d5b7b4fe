"""Batch scoring: the population, its point-in-time features, the prediction table, the file."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mlops_flows.adapters import features
from mlops_flows.adapters.features import FeatureRepoError
from mlops_flows.errors import MlopsError
from mlops_flows.logic.times import to_utc

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore

OUTPUT_COLUMNS = (
    "customer_id",
    "as_of",
    "churn_probability",
    "model_name",
    "model_version",
    "feature_service",
)
# Score bands of the run summary: coarse enough to read at a glance.
BAND_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


class PopulationError(MlopsError):
    """The population to score cannot be read or is empty."""


@dataclass(frozen=True)
class ScoreDistribution:
    """Summary of a batch of churn probabilities."""

    count: int
    mean: float
    quantiles: dict[str, float]  # min, p10, p50, p90, max
    bands: tuple[tuple[str, int], ...]  # ("0.0-0.2", rows), ...


def output_name(as_of: datetime) -> str:
    """File name of the batch scored at `as_of` (UTC, minute precision)."""
    return f"batch-{to_utc(as_of):%Y%m%dT%H%M}.parquet"


def extract_population(
    source: pd.DataFrame, entity_key: str, timestamp_field: str, as_of: datetime
) -> list[int]:
    """Every entity id with a source row at or before `as_of`, sorted, each once."""
    for column in (entity_key, timestamp_field):
        if column not in source.columns:
            raise PopulationError(
                f"The population source lacks column {column!r} (found: "
                f"{', '.join(map(str, source.columns))})."
            )
    stamps = pd.to_datetime(source[timestamp_field], utc=True)
    known = source.loc[stamps <= pd.Timestamp(to_utc(as_of)), entity_key].dropna()
    return sorted(int(value) for value in known.unique())


def population_source(store: FeatureStore, view_name: str) -> tuple[Path, str]:
    """Path and timestamp field of the file behind a feature view, read through the store."""
    from feast import FileSource
    from feast.errors import FeatureViewNotFoundException

    try:
        view = store.get_feature_view(view_name)
    except FeatureViewNotFoundException:
        known = sorted(v.name for v in store.list_feature_views())
        raise FeatureRepoError(
            f"Population view '{view_name}' is not in the Feast registry (known: "
            f"{', '.join(known) or 'none'}). Run `mlops features apply` or pick a known view."
        ) from None
    source = view.batch_source
    if not isinstance(source, FileSource):
        raise FeatureRepoError(
            f"Feature view '{view_name}' does not read a file source ({type(source).__name__}); "
            "the population is read from a parquet file."
        )
    return features.source_path(store, source), str(source.timestamp_field)


def read_population(
    store: FeatureStore, view_name: str, entity_key: str, as_of: datetime
) -> list[int]:
    """Every entity id the view's source file knows at `as_of`; an error when there is none."""
    import pyarrow.parquet as pq

    path, timestamp_field = population_source(store, view_name)
    if not path.is_file():
        raise PopulationError(
            f"The population source {path} (feature view '{view_name}') does not exist. "
            "Run `mlops simulate` or put your parquet file there."
        )
    source = pq.read_table(path, columns=[entity_key, timestamp_field]).to_pandas()
    population = extract_population(source, entity_key, timestamp_field, as_of)
    if not population:
        raise PopulationError(
            f"No {entity_key} in {path} has a row at or before {to_utc(as_of):%Y-%m-%d %H:%M} "
            "UTC: choose an `as_of` inside the period the source covers."
        )
    return population


def build_scoring_set(
    store: FeatureStore,
    service: FeatureService,
    entity_ids: Sequence[int],
    at: datetime,
    entity_key: str,
    timestamp_column: str,
) -> pd.DataFrame:
    """The service's features of each entity as known at `at`, one row per entity, in id order."""
    stamp = pd.Timestamp(to_utc(at)).as_unit("ns")
    entity_frame = pd.DataFrame(
        {
            entity_key: np.asarray(entity_ids, dtype="int64"),
            timestamp_column: pd.Series([stamp] * len(entity_ids), dtype="datetime64[ns, UTC]"),
        }
    )
    return features.retrieve(store, service, entity_frame, entity_key, timestamp_column)


def prediction_table(
    entity_ids: Sequence[int],
    scores: np.ndarray,
    as_of: datetime,
    model_name: str,
    model_version: str,
    feature_service: str,
) -> pd.DataFrame:
    """The batch's output rows, columns as in OUTPUT_COLUMNS."""
    if len(entity_ids) != len(scores):
        raise ValueError(f"{len(entity_ids)} entity ids but {len(scores)} scores")
    rows = len(scores)
    table = pd.DataFrame(
        {
            "customer_id": np.asarray(entity_ids, dtype="int64"),
            "as_of": pd.Series([pd.Timestamp(to_utc(as_of))] * rows, dtype="datetime64[ns, UTC]"),
            "churn_probability": np.asarray(scores, dtype="float64"),
            "model_name": [model_name] * rows,
            "model_version": [model_version] * rows,
            "feature_service": [feature_service] * rows,
        }
    )
    return table[list(OUTPUT_COLUMNS)]


def write_atomically(frame: pd.DataFrame, path: Path) -> Path:
    """Write parquet under a temporary name, then rename: readers see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        frame.to_parquet(temporary, index=False)
        os.replace(temporary, path)  # atomic within one file system
    finally:
        temporary.unlink(missing_ok=True)
    return path


def score_distribution(scores: np.ndarray) -> ScoreDistribution:
    """Mean, quantiles and band counts of a batch of probabilities."""
    values = np.asarray(scores, dtype="float64")
    if values.size == 0:
        return ScoreDistribution(0, float("nan"), {}, ())
    points = {"min": 0.0, "p10": 0.1, "p50": 0.5, "p90": 0.9, "max": 1.0}
    quantiles = {name: float(np.quantile(values, q)) for name, q in points.items()}
    # The top band is closed, so a probability of exactly 1.0 is counted.
    counts, _ = np.histogram(values, bins=BAND_EDGES)
    bands = tuple(
        (f"{low:.1f}-{high:.1f}", int(count))
        for low, high, count in zip(BAND_EDGES[:-1], BAND_EDGES[1:], counts, strict=True)
    )
    return ScoreDistribution(int(values.size), float(values.mean()), quantiles, bands)
