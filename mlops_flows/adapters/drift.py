"""Drift of recent data against the champion's reference, and decay of its ROC AUC: values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pandas as pd

from mlops_flows.errors import MlopsError

# evidently costs ~7 s to import, so it is imported inside functions only.
if TYPE_CHECKING:
    from evidently.core.report import Snapshot

    from mlops_flows.settings import MonitoringSettings


class DriftStatus(StrEnum):
    """What a drift check found (of features, predictions or one segment)."""

    DRIFT = "drift"
    NO_DRIFT = "no_drift"
    NOT_ENOUGH_DATA = "not_enough_data"


# Evidently results are read by type name, never by position in the report.
_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_VALUE_DRIFT_TEST = "evidently:bound_test:ValueDriftBoundTest"


class DriftInputError(MlopsError, ValueError):
    """The frames or column lists given to a drift check do not fit together."""


class DriftReportError(MlopsError, RuntimeError):
    """Evidently's report lacks a result the check needs."""


class ColumnDrift(NamedTuple):
    """One column's test: method, its score (a p-value for ks/chisquare), threshold, verdict."""

    method: str
    score: float
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DriftResult:
    """Outcome of comparing current data with the reference, column by column."""

    status: DriftStatus
    drift_share: float | None  # observed share of drifted columns; None when not compared
    threshold: float  # share of drifted columns at which the data set drifted
    drifted_columns: tuple[str, ...]
    scores: Mapping[str, ColumnDrift]
    reference_rows: int  # rows compared, after sampling
    current_rows: int
    reference_rows_total: int  # rows given, before sampling
    current_rows_total: int
    reason: str
    report: Snapshot | None = field(default=None, compare=False, repr=False)

    @property
    def drifted(self) -> bool:
        return self.status is DriftStatus.DRIFT

    def save_html(self, path: Path) -> Path:
        """Write Evidently's HTML report; there is none when the data were not compared."""
        if self.report is None:
            raise DriftReportError(f"No report to save: {self.reason}")
        self.report.save_html(str(path))
        return path

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per column, for a table artifact."""
        return [
            {
                "feature": column,
                "method": result.method,
                "score": _finite(result.score),
                "threshold": result.threshold,
                "drifted": result.drifted,
            }
            for column, result in self.scores.items()
        ]

    def to_payload(self) -> dict[str, Any]:
        """JSON-ready summary (no report)."""
        return {
            "status": self.status,
            "drift_share": self.drift_share,
            "threshold": self.threshold,
            "drifted_columns": list(self.drifted_columns),
            "scores": {
                column: result._asdict() | {"score": _finite(result.score)}
                for column, result in self.scores.items()
            },
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "reference_rows_total": self.reference_rows_total,
            "current_rows_total": self.current_rows_total,
            "reason": self.reason,
        }


def _finite(value: float) -> float | None:
    # A test on a single category gives a NaN p-value; JSON (artifacts, events) has no NaN.
    return value if math.isfinite(value) else None


def check_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    categorical: list[str],
    settings: MonitoringSettings,
) -> DriftResult:
    """Test every column with the fixed methods and thresholds of `settings`."""
    threshold = settings.drift_share
    if len(current) < settings.min_rows or reference.empty:
        return DriftResult(
            status=DriftStatus.NOT_ENOUGH_DATA,
            drift_share=None,
            threshold=threshold,
            drifted_columns=(),
            scores={},
            reference_rows=0,
            current_rows=0,
            reference_rows_total=len(reference),
            current_rows_total=len(current),
            reason=f"not enough data: {len(current)} current row(s) against "
            f"{len(reference)} reference row(s); at least {settings.min_rows} current rows "
            "(MLOPS_MONITORING__MIN_ROWS) and one reference row are needed",
        )
    _check_columns(reference, current, columns, categorical)
    # A seeded cap per side: the tests' p-values are as good as the sample, and 1M rows stay
    # seconds instead of a minute.
    reference_sample = _sample(reference[columns], settings.sample_rows, settings.seed)
    current_sample = _sample(current[columns], settings.sample_rows, settings.seed)
    snapshot = _run_report(reference_sample, current_sample, columns, categorical, settings)
    scores, share = _read_snapshot(snapshot.dict(), columns)
    drifted = tuple(column for column, result in scores.items() if result.drifted)
    # Evidently's own rule for data-set drift: share of drifted columns >= drift_share.
    status = DriftStatus.DRIFT if share >= threshold else DriftStatus.NO_DRIFT
    comparison = ">=" if status is DriftStatus.DRIFT else "<"
    reason = (
        f"{len(drifted)} of {len(columns)} columns drifted (share {share:.2f} {comparison} "
        f"{threshold:.2f})" + (f": {', '.join(drifted)}" if drifted else "")
    )
    return DriftResult(
        status=status,
        drift_share=share,
        threshold=threshold,
        drifted_columns=drifted,
        scores=scores,
        reference_rows=len(reference_sample),
        current_rows=len(current_sample),
        reference_rows_total=len(reference),
        current_rows_total=len(current),
        reason=reason,
        report=snapshot,
    )


def split_by_segment(
    reference: pd.DataFrame, current: pd.DataFrame, column: str
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """Reference and current rows of each value of `column` seen in the current data."""
    for name, frame in (("reference", reference), ("current", current)):
        if column not in frame.columns:
            raise DriftInputError(
                f"The {name} frame has no segment column {column!r}: set "
                "MLOPS_MONITORING__SEGMENT_COLUMN to one of the features, or empty."
            )
    segments = sorted(str(value) for value in current[column].dropna().unique())
    return {
        segment: (
            reference[reference[column].astype(str) == segment].reset_index(drop=True),
            current[current[column].astype(str) == segment].reset_index(drop=True),
        )
        for segment in segments
    }


def check_segment_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    categorical: list[str],
    segment_column: str,
    settings: MonitoringSettings,
) -> DriftResult:
    """Drift within one segment (every column but the segment's own), without the report."""
    kept = [column for column in columns if column != segment_column]
    kept_categorical = [column for column in categorical if column != segment_column]
    found = check_drift(reference, current, kept, kept_categorical, settings)
    # Segments are reported as values; their HTML would travel back from every worker.
    return replace(found, report=None)


def _check_columns(
    reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], categorical: list[str]
) -> None:
    if not columns:
        raise DriftInputError("No columns to compare: pass the feature columns to check.")
    stray = sorted(set(categorical) - set(columns))
    if stray:
        raise DriftInputError(
            f"Categorical column(s) {', '.join(stray)} are not among the columns compared "
            f"({', '.join(columns)})."
        )
    for name, frame in (("reference", reference), ("current", current)):
        missing = [column for column in columns if column not in frame.columns]
        if missing:
            raise DriftInputError(
                f"The {name} frame lacks column(s) {', '.join(missing)} (found: "
                f"{', '.join(map(str, frame.columns))}). Both sides need the same features: "
                "was the champion trained with another feature service?"
            )


def _sample(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=rows, random_state=seed).reset_index(drop=True)


def _run_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: list[str],
    categorical: list[str],
    settings: MonitoringSettings,
) -> Snapshot:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(
        numerical_columns=[column for column in columns if column not in categorical],
        categorical_columns=list(categorical),
    )
    # Methods and thresholds fixed: Evidently's default picks the test by sample size.
    preset = DataDriftPreset(
        columns=list(columns),
        num_method=settings.numerical_method,
        num_threshold=settings.numerical_threshold,
        cat_method=settings.categorical_method,
        cat_threshold=settings.categorical_threshold,
        drift_share=settings.drift_share,
    )
    report = Report([preset], include_tests=True)
    return report.run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )


def _read_snapshot(
    document: Mapping[str, Any], columns: Sequence[str]
) -> tuple[dict[str, ColumnDrift], float]:
    """Per-column results and the drifted share, found by metric and test type."""
    verdicts = {
        test["metric_config"]["metric_id"]: test["status"]
        for test in document.get("tests", [])
        if test.get("bound_test", {}).get("type") == _VALUE_DRIFT_TEST
    }
    found: dict[str, ColumnDrift] = {}
    share: float | None = None
    for metric in document.get("metrics", []):
        config = metric["config"]
        if config["type"] == _DRIFTED_COLUMNS_COUNT:
            share = float(metric["value"]["share"])
        elif config["type"] == _VALUE_DRIFT:
            column = config["column"]
            if metric["id"] not in verdicts:
                raise DriftReportError(f"Evidently gave no drift verdict for column {column!r}.")
            found[column] = ColumnDrift(
                method=str(config["method"]),
                score=float(metric["value"]),
                threshold=float(config["threshold"]),
                drifted=verdicts[metric["id"]] == "FAIL",
            )
    missing = [column for column in columns if column not in found]
    if share is None or missing:
        raise DriftReportError(
            "Evidently's report lacks "
            + ("the drifted-columns share" if share is None else f"column(s) {missing}")
        )
    return {column: found[column] for column in columns}, share


def window_midnights(
    start: datetime, end: datetime, earliest: datetime | None, latest: datetime | None
) -> list[pd.Timestamp]:
    """Midnights (UTC) in [start, end] that lie inside the span the sources hold data for."""
    if earliest is None or latest is None:
        return []
    low = max(_utc(start), _utc(earliest))
    high = min(_utc(end), _utc(latest))
    if low > high:
        return []
    return list(pd.date_range(low.ceil("D"), high.floor("D"), freq="D"))


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def entity_frame(
    first_seen: pd.Series, days: Sequence[pd.Timestamp], entity_key: str, timestamp_column: str
) -> pd.DataFrame:
    """One row per entity and day, from the first day the entity is known on."""
    known = pd.to_datetime(first_seen, utc=True)
    ids = np.asarray(known.index, dtype="int64")
    frames = [
        pd.DataFrame({entity_key: ids[(known <= day).to_numpy()], timestamp_column: day})
        for day in days
    ]
    columns = [entity_key, timestamp_column]
    if not frames:
        empty = {
            entity_key: pd.Series(dtype="int64"),
            timestamp_column: pd.Series(dtype="datetime64[ns, UTC]"),
        }
        return pd.DataFrame(empty)[columns]
    frame = pd.concat(frames, ignore_index=True)
    frame[timestamp_column] = frame[timestamp_column].astype("datetime64[ns, UTC]")
    return frame[columns]
