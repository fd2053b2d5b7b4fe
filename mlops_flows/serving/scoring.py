"""Online scoring, the pure part: online feature rows -> model input -> prediction log records."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_flows.errors import MlopsError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

# Feast keys the entity as INT64: a larger Python int cannot even be looked up.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class ServedModel:
    """A loaded model version and the columns it reads, swapped as one reference."""

    name: str
    version: str
    model: Pipeline
    feature_names: tuple[str, ...]
    categories: Mapping[str, frozenset[Any]] = field(default_factory=dict)  # seen in training


class UnknownEntitiesError(MlopsError):
    """Some requested ids have no features in the online store."""

    def __init__(self, ids: list[int]) -> None:
        self.ids = ids
        shown = ", ".join(str(i) for i in ids[:20]) + (" ..." if len(ids) > 20 else "")
        super().__init__(
            f"No online features for customer id(s) {shown}: unknown customers, or the online "
            "store is not materialized for them (`mlops features materialize`)."
        )


class IncompleteFeaturesError(UnknownEntitiesError):
    """Some requested ids lack part of their online features: a view not materialized for
    them, values expired, or nulls stored from the source."""

    def __init__(
        self,
        ids: list[int],
        columns: list[str],
        nulls: Sequence[str] = (),
        absent: Sequence[str] | None = None,
    ) -> None:
        self.ids, self.columns, self.nulls = ids, columns, list(nulls)
        shown = ", ".join(str(i) for i in ids[:20]) + (" ..." if len(ids) > 20 else "")
        absent = columns if absent is None else absent
        causes = []
        if self.nulls:
            causes.append(
                f"null in the feature source: {', '.join(self.nulls)} (the online store holds "
                "the null that was materialized; fix those source rows, then run `mlops "
                "features materialize`)"
            )
        if absent:
            causes.append(
                f"not in the online store: {', '.join(absent)} (partly materialized, or the "
                "values expired by the feature view's TTL; run `mlops features materialize`)"
            )
        Exception.__init__(
            self,
            f"Online features of customer id(s) {shown} are incomplete (missing: "
            f"{', '.join(columns)}). They are not scored with inputs the model never saw in "
            f"training. Cause: {'; '.join(causes)}.",
        )


class IncompatibleModelError(MlopsError):
    """The model reads columns the feature service does not provide."""


class ModelLoadError(MlopsError):
    """A registered version's model cannot be loaded: artifact missing or corrupt, store down."""

    def __init__(self, name: str, version: str, tracking_uri: str, cause: BaseException) -> None:
        self.version = version
        super().__init__(
            f"Model {name} v{version} could not be loaded from {tracking_uri} "
            f"({type(cause).__name__}: {str(cause)[:300]}): its artifact is missing or corrupt, "
            "or the store is not answering. Re-register a good model, or point `champion` at a "
            "version that loads."
        )


def out_of_range_ids(ids: Sequence[int]) -> list[int]:
    """Ids that do not fit the entity's INT64 key."""
    return [i for i in ids if not INT64_MIN <= i <= INT64_MAX]


def check_model_columns(model: ServedModel, service_features: Sequence[str]) -> None:
    """Refuse a model that needs a column the feature service does not serve."""
    missing = sorted(set(model.feature_names) - set(service_features))
    if missing:
        raise IncompatibleModelError(
            f"Model {model.name} v{model.version} reads {', '.join(missing)}, which the feature "
            f"service does not provide (it serves: {', '.join(service_features)}). Serve the "
            "feature service the model was trained with (MLOPS_FEATURES__FEATURE_SERVICE)."
        )


def model_input(
    online: pd.DataFrame,
    entity_key: str,
    feature_names: Sequence[str],
    stored: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The online rows the model reads; an error naming ids with every feature null, else
    ids with some null (training sets never hold nulls: the suites refuse them). `stored`
    (`online_store.stored_values`) tells a null stored from the source from a value never stored,
    for the columns it has (computed ones follow their inputs)."""
    names = list(feature_names)
    missing = online[names].isna()
    stored = pd.DataFrame(index=online.index) if stored is None else stored
    known = [name for name in names if name in stored.columns]
    empty = missing.all(axis=1) & ~stored[known].any(axis=1)
    if empty.any():
        raise UnknownEntitiesError(sorted({int(i) for i in online.loc[empty, entity_key]}))
    partial = missing.any(axis=1)
    if partial.any():
        ids = sorted({int(i) for i in online.loc[partial, entity_key]})
        columns = [name for name in names if missing[name].any()]
        if not known:
            raise IncompleteFeaturesError(ids, columns)
        nulls = [name for name in known if (missing[name] & stored[name]).any()]
        absent = [name for name in known if (missing[name] & ~stored[name]).any()]
        raise IncompleteFeaturesError(ids, columns, nulls, absent)
    return online[[entity_key, *names]]


def prediction_records(
    frame: pd.DataFrame,
    scores: np.ndarray,
    model: ServedModel,
    feature_service: str,
    entity_key: str,
    scored_at: datetime,
) -> list[dict[str, Any]]:
    """One log record per scored row, with the exact features the model saw."""
    feature_rows = frame[list(model.feature_names)].to_dict(orient="records")
    return [
        {
            **_record_head(entity, model, feature_service, scored_at),
            "churn_probability": float(score),
            "features": {name: _json_value(value) for name, value in features.items()},
            # Scored as if absent (the encoder ignores them): counted so monitoring can say.
            "unseen_categories": unseen_categories(features, model.categories),
            "missing_features": [],
        }
        for entity, score, features in zip(
            frame[entity_key].tolist(), scores.tolist(), feature_rows, strict=True
        )
    ]


def refusal_records(
    online: pd.DataFrame,
    model: ServedModel,
    feature_service: str,
    entity_key: str,
    scored_at: datetime,
) -> list[dict[str, Any]]:
    """One log record per row refused for features missing at scoring time (a null from the
    source or a value never stored): no score, the missing features named, so monitoring can
    count them as it counts unseen categories."""
    names = list(model.feature_names)
    missing = online[names].isna()
    refused = missing.any(axis=1) & ~missing.all(axis=1)  # all missing: an unknown id
    return [
        {
            **_record_head(entity, model, feature_service, scored_at),
            "churn_probability": None,
            "features": {name: _json_value(value) for name, value in row.items()},
            "unseen_categories": [],
            "missing_features": [name for name in names if missing.at[index, name]],
        }
        for index, entity, row in zip(
            online.index[refused],
            online.loc[refused, entity_key].tolist(),
            online.loc[refused, names].to_dict(orient="records"),
            strict=True,
        )
    ]


def _record_head(
    entity: Any, model: ServedModel, feature_service: str, scored_at: datetime
) -> dict[str, Any]:
    return {
        "scored_at": scored_at.isoformat(),
        "customer_id": int(entity),
        "model_name": model.name,
        "model_version": model.version,
        "feature_service": feature_service,
    }


def unseen_categories(
    features: Mapping[Any, Any], categories: Mapping[str, frozenset[Any]]
) -> list[str]:
    """The encoded features whose value the model never saw in training."""
    return sorted(
        name
        for name, known in categories.items()
        if features.get(name) is not None and features[name] not in known
    )


def feature_shares(records: Sequence[Mapping[str, Any]], field: str) -> dict[str, float]:
    """Per feature, the share of records that name it under `field` (`unseen_categories`,
    `missing_features`)."""
    counts = Counter(name for record in records for name in record.get(field, []))
    return {name: counts[name] / len(records) for name in sorted(counts)}


def _json_value(value: Any) -> Any:
    # JSON has no NaN, and numpy scalars would be written as strings by `default=str`.
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
