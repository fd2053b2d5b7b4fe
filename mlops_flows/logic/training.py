"""Split, fit and score: the model is one scikit-learn Pipeline with its preprocessing inside."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_flows.errors import MlopsError
from mlops_flows.logic.keys import TrainingSetKeys

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


class TrainingDataError(MlopsError):
    """The training set cannot be split or fitted as asked."""


@dataclass(frozen=True)
class ModelParameters:
    """Hyperparameters of the boosted-trees classifier."""

    max_iter: int
    learning_rate: float
    max_leaf_nodes: int
    min_samples_leaf: int
    seed: int
    threads: int = 1


@dataclass(frozen=True)
class TimeSplit:
    """Training rows strictly before the holdout's first label time."""

    train: pd.DataFrame
    holdout: pd.DataFrame
    cutoff: pd.Timestamp


def feature_columns(frame: pd.DataFrame, keys: TrainingSetKeys) -> list[str]:
    """Every column that is neither key, timestamp nor label."""
    return [c for c in frame.columns if c not in (keys.entity_key, keys.timestamp, keys.label)]


def check_trainable(
    frame: pd.DataFrame, keys: TrainingSetKeys, slice_columns: Sequence[str]
) -> None:
    """Before any fit: every feature holds numbers, text or booleans (not lists, maps,
    structs or objects the estimator cannot take), and every slice column is there. Each
    problem names all its columns at once."""
    unusable = [
        f"{column} ({_kind(frame[column])})"
        for column in feature_columns(frame, keys)
        if _kind(frame[column]) is not None
    ]
    if unusable:
        raise TrainingDataError(
            f"Feature(s) {', '.join(unusable)} are not numbers, text or booleans: the "
            "estimator cannot take them. Drop them from the FeatureService, or turn them into "
            "columns of their own (an on-demand feature view)."
        )
    missing = [column for column in slice_columns if column not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"Slice column(s) {', '.join(missing)} (MLOPS_GATES__SLICE_COLUMNS) are not in the "
            f"training set, whose columns are {', '.join(map(str, frame.columns))}. Name "
            "columns it has, e.g. MLOPS_GATES__SLICE_COLUMNS='[\"region\"]', or '[]' for "
            "no slices."
        )


def _kind(column: pd.Series) -> str | None:
    """What a column holds when the estimator cannot take it (None when it can): judged by
    its dtype, or for Python objects by a sample of its values."""
    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return None
    if isinstance(column.dtype, pd.CategoricalDtype):
        return None
    if pd.api.types.is_string_dtype(column) and not pd.api.types.is_object_dtype(column):
        return None
    if not pd.api.types.is_object_dtype(column):
        return str(column.dtype)
    values = column.dropna().head(1000)
    odd = sorted({type(value).__name__ for value in values if not isinstance(value, str)})
    return ", ".join(odd) if odd else None


def split_by_time(frame: pd.DataFrame, keys: TrainingSetKeys, holdout_days: int) -> TimeSplit:
    """Hold out the last `holdout_days` of label time; no training row is from that period."""
    stamps = frame[keys.timestamp]
    cutoff = stamps.max() - pd.Timedelta(timedelta(days=holdout_days))
    if stamps.is_monotonic_increasing:
        # A training set arrives sorted by time: the parts are slices that share its memory
        # instead of a second copy of it (200 MB less at the peak of a million-row run).
        first_held_out = int(stamps.searchsorted(cutoff, side="right"))
        train, holdout = frame.iloc[:first_held_out], frame.iloc[first_held_out:]
    else:
        train, holdout = frame[stamps <= cutoff], frame[stamps > cutoff]
    for name, part in (("training", train), ("holdout", holdout)):
        if part[keys.label].nunique() < 2:
            raise TrainingDataError(
                f"The {name} part ({len(part)} rows, split at {cutoff}) needs both label "
                "classes. Widen the window or shorten the holdout."
            )
    return TimeSplit(_renumbered(train), _renumbered(holdout), cutoff)


def _renumbered(part: pd.DataFrame) -> pd.DataFrame:
    """The rows numbered from 0, sharing the data (`reset_index` would copy it)."""
    renumbered = part.copy(deep=False)
    renumbered.index = pd.RangeIndex(len(part))
    return renumbered


def build_pipeline(
    frame: pd.DataFrame, features: list[str], parameters: ModelParameters
) -> Pipeline:
    """One-hot encode text columns, pass numbers through, boost trees."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    categorical = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    numeric = [c for c in features if c not in categorical]
    preprocess = ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                categorical,
            ),
            ("numeric", "passthrough", numeric),
        ],
        verbose_feature_names_out=False,
    )
    classifier = HistGradientBoostingClassifier(
        max_iter=parameters.max_iter,
        learning_rate=parameters.learning_rate,
        max_leaf_nodes=parameters.max_leaf_nodes,
        min_samples_leaf=parameters.min_samples_leaf,
        early_stopping=False,
        random_state=parameters.seed,
    )
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


def fit_model(train: pd.DataFrame, keys: TrainingSetKeys, parameters: ModelParameters) -> Pipeline:
    """Fit the pipeline on the training rows."""
    from threadpoolctl import threadpool_limits

    features = feature_columns(train, keys)
    pipeline = build_pipeline(train, features, parameters)
    with threadpool_limits(limits=parameters.threads):
        return pipeline.fit(_columns(train, features), train[keys.label].to_numpy())


def metric_rows(frame: pd.DataFrame, most: int | None, seed: int) -> pd.DataFrame:
    """The rows train metrics are computed on: all of them, or a seeded sample of `most`."""
    if most is None or len(frame) <= most:
        return frame
    return frame.sample(n=most, random_state=seed)


def predict_scores(
    model: Pipeline, frame: pd.DataFrame, features: list[str], threads: int = 1
) -> np.ndarray:
    """Churn probability of each row."""
    from threadpoolctl import threadpool_limits

    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise TrainingDataError(
            f"The model needs column(s) {', '.join(missing)} that the frame lacks."
        )
    with threadpool_limits(limits=threads):
        return np.asarray(model.predict_proba(_columns(frame, features))[:, 1], dtype="float64")


def _columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The named columns sharing the frame's data: `frame[columns]` would copy them all (a
    second training set in memory). The model only reads its input."""
    with pd.option_context("mode.copy_on_write", True):
        return frame[columns]


def model_feature_names(model: Pipeline) -> list[str]:
    """The input columns a fitted pipeline reads, in order."""
    return [str(name) for name in model.feature_names_in_]


def known_categories(model: Pipeline) -> dict[str, frozenset[Any]]:
    """The categories each encoded column held in training (its encoder ignores others), for
    every encoder with `categories_` in the pipeline's column transformers."""
    from sklearn.compose import ColumnTransformer

    known: dict[str, frozenset[Any]] = {}
    for step in model.named_steps.values():
        if not isinstance(step, ColumnTransformer):
            continue
        for _, encoder, columns in step.transformers_:
            for column, values in zip(columns, getattr(encoder, "categories_", []), strict=False):
                known[str(column)] = frozenset(values.tolist())
    return known
