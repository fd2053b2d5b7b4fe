"""Performance decay: the champion's ROC AUC on recent labelled rows against its holdout's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd


class DecayStatus(StrEnum):
    """What the performance check found on the window's labels."""

    DECAY = "decay"
    NO_DECAY = "no_decay"
    NOT_ENOUGH_DATA = "not_enough_data"


@dataclass(frozen=True)
class DecayResult:
    """ROC AUC on recent labelled data against the champion's holdout ROC AUC."""

    status: DecayStatus
    decayed: bool
    observed_roc_auc: float | None
    reference_roc_auc: float
    drop: float | None  # reference - observed; positive means worse now
    max_drop: float
    rows: int
    reason: str

    def to_payload(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "decayed": self.decayed,
            "observed_roc_auc": self.observed_roc_auc,
            "reference_roc_auc": self.reference_roc_auc,
            "drop": self.drop,
            "max_drop": self.max_drop,
            "rows": self.rows,
            "reason": self.reason,
        }


def performance_decay(
    y_true: Sequence[int] | np.ndarray | pd.Series,
    y_score: Sequence[float] | np.ndarray | pd.Series,
    reference_roc_auc: float,
    max_drop: float,
    min_rows: int = 1,
) -> DecayResult:
    """Decay when ROC AUC fell by more than `max_drop` below the reference."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(y_true)
    scores = np.asarray(y_score, dtype="float64")
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    classes = np.unique(labels)
    if labels.size < min_rows or classes.size < 2:
        return DecayResult(
            status=DecayStatus.NOT_ENOUGH_DATA,
            decayed=False,
            observed_roc_auc=None,
            reference_roc_auc=reference_roc_auc,
            drop=None,
            max_drop=max_drop,
            rows=int(labels.size),
            reason=f"not enough labelled data: {labels.size} row(s) with class(es) "
            f"{classes.tolist()}; ROC AUC needs both classes and at least {min_rows} rows",
        )
    observed = float(roc_auc_score(labels, scores))
    drop = reference_roc_auc - observed
    # Equal within rounding is not a decay: 0.80 - 0.75 is 0.05000000000000004 in floats.
    decayed = drop > max_drop and not math.isclose(drop, max_drop, abs_tol=1e-9)
    comparison = ">" if decayed else "<="
    return DecayResult(
        status=DecayStatus.DECAY if decayed else DecayStatus.NO_DECAY,
        decayed=decayed,
        observed_roc_auc=observed,
        reference_roc_auc=reference_roc_auc,
        drop=drop,
        max_drop=max_drop,
        rows=int(labels.size),
        reason=f"ROC AUC {observed:.3f} on {labels.size} labelled rows against "
        f"{reference_roc_auc:.3f} on the champion's holdout: drop {drop:.3f} {comparison} "
        f"{max_drop:.3f}",
    )
