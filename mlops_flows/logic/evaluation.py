"""Holdout metrics and promotion gates of a binary classifier; results are values."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mlops_flows.errors import MlopsError
from mlops_flows.settings import GateSettings

FloatArray = npt.NDArray[np.float64]
LabelArray = npt.NDArray[np.int64]
IndexArray = npt.NDArray[np.int64]

DECISION_THRESHOLD = 0.5
PRIMARY_METRIC = "roc_auc"  # what a candidate is compared with its champion on
LOG_LOSS_EPSILON = 1e-15
# Resamples are drawn in chunks of at most this many row draws to bound memory (~50 MB).
_BOOTSTRAP_CELLS_PER_CHUNK = 2_000_000


class EvaluationInputError(MlopsError, ValueError):
    """Labels or scores handed to an evaluation are not what a binary classifier produces."""


def checked_labels(y_true: npt.ArrayLike) -> LabelArray:
    """Return y_true as a 1-D array of 0/1 labels holding both classes, or raise."""
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise EvaluationInputError(f"expected y_true one-dimensional; found shape {labels.shape}")
    if labels.dtype != bool:
        unexpected = pd.unique(labels[~np.isin(labels, [0, 1])])
        if unexpected.size:
            raise EvaluationInputError(
                f"expected y_true of 0/1 labels; found values {unexpected[:5].tolist()}"
            )
    labels = labels.astype(np.int64)
    present = np.unique(labels)
    if present.size < 2:
        found = f"only class {present[0]}" if present.size else "no rows"
        raise EvaluationInputError(
            f"expected both classes in y_true; found {found} in {labels.size} rows. "
            "Evaluate on a holdout that holds positive and negative examples."
        )
    return labels


def checked_scores(y_score: npt.ArrayLike, rows: int, name: str = "y_score") -> FloatArray:
    """Return y_score as a 1-D float array of `rows` probabilities in [0, 1], or raise."""
    scores = np.asarray(y_score, dtype=np.float64)
    if scores.ndim != 1 or scores.size != rows:
        raise EvaluationInputError(
            f"expected {name} as {rows} scores, one per row of y_true; found shape {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise EvaluationInputError(f"expected finite {name}; found NaN or infinite values")
    if scores.min() < 0.0 or scores.max() > 1.0:
        raise EvaluationInputError(
            f"expected {name} within [0, 1] (positive-class probabilities); "
            f"found min {scores.min():.4g}, max {scores.max():.4g}"
        )
    return scores


def expected_calibration_error(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, bins: int = 10
) -> float:
    """Row-weighted mean gap between predicted and observed positive rate over equal-width bins."""
    labels = checked_labels(y_true)
    scores = checked_scores(y_score, labels.size)
    if bins < 1:
        raise EvaluationInputError(f"expected at least 1 bin; found {bins}")
    # A score of exactly 1.0 belongs to the last bin, not to an extra one.
    bin_of_row = np.minimum((scores * bins).astype(np.int64), bins - 1)
    score_sums = np.bincount(bin_of_row, weights=scores, minlength=bins)
    label_sums = np.bincount(bin_of_row, weights=labels, minlength=bins)
    return float(np.abs(score_sums - label_sums).sum() / labels.size)


def compute_metrics(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> dict[str, float]:
    """Ranking, probability and thresholded metrics of positive-class scores."""
    labels = checked_labels(y_true)
    scores = checked_scores(y_score, labels.size)
    predicted = (scores >= DECISION_THRESHOLD).astype(np.int64)
    clipped = np.clip(scores, LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON)
    return {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "log_loss": float(log_loss(labels, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(labels, scores)),
        "calibration_error": expected_calibration_error(labels, scores),
        "accuracy": float(accuracy_score(labels, predicted)),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "recall": float(recall_score(labels, predicted, zero_division=0)),
        "positive_rate": float(predicted.mean()),
    }


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict with the value it saw and the bound it applied."""

    name: str
    passed: bool
    observed: float | None
    threshold: float | None
    reason: str


@dataclass(frozen=True)
class GateReport:
    """All gate verdicts of one candidate."""

    results: tuple[GateResult, ...]

    @property
    def passed(self) -> bool:
        """True when every gate passed."""
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> tuple[GateResult, ...]:
        """The gates that failed, in report order."""
        return tuple(result for result in self.results if not result.passed)

    def summary(self) -> str:
        """One line naming each failed gate with observed vs threshold."""
        if self.passed:
            return f"all {len(self.results)} gates passed"
        failed = "; ".join(
            f"{result.name} (observed {_format(result.observed)} "
            f"vs threshold {_format(result.threshold)})"
            for result in self.failures
        )
        return f"{len(self.failures)} of {len(self.results)} gates failed: {failed}"

    def to_rows(self) -> list[dict[str, Any]]:
        """JSON-safe rows for a table artifact."""
        return [
            {
                "gate": result.name,
                "passed": result.passed,
                "observed": _json_float(result.observed),
                "threshold": _json_float(result.threshold),
                "reason": result.reason,
            }
            for result in self.results
        ]


def _format(value: float | None) -> str:
    """Four decimals, or `none`."""
    return "none" if value is None else f"{value:.4f}"


def _json_float(value: float | None) -> float | None:
    """Round to 4 dp; NaN and infinities become None, which JSON can hold."""
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), 4)


def _at_least(name: str, observed: float, minimum: float) -> GateResult:
    """Gate passing when observed >= minimum."""
    passed = bool(observed >= minimum)
    verdict = "meets" if passed else "is below"
    reason = f"{name} {observed:.4f} {verdict} the minimum {minimum:.4f}"
    return GateResult(name, passed, float(observed), float(minimum), reason)


def _at_most(name: str, observed: float, maximum: float) -> GateResult:
    """Gate passing when observed <= maximum."""
    passed = bool(observed <= maximum)
    verdict = "meets" if passed else "exceeds"
    reason = f"{name} {observed:.4f} {verdict} the maximum {maximum:.4f}"
    return GateResult(name, passed, float(observed), float(maximum), reason)


def absolute_gates(metrics: dict[str, float], settings: GateSettings) -> list[GateResult]:
    """Holdout quality floors every candidate must meet, champion or not."""
    missing = sorted({"roc_auc", "log_loss", "calibration_error"} - metrics.keys())
    if missing:
        raise EvaluationInputError(
            f"expected metrics roc_auc, log_loss, calibration_error; missing {missing}. "
            "Build them with compute_metrics."
        )
    return [
        _at_least("roc_auc", metrics["roc_auc"], settings.min_roc_auc),
        _at_most("log_loss", metrics["log_loss"], settings.max_log_loss),
        _at_most("calibration_error", metrics["calibration_error"], settings.max_calibration_error),
    ]


def _resampled_rows(rng: np.random.Generator, rows: int, resamples: int) -> Iterator[IndexArray]:
    """Yield (chunk, rows) matrices of drawn row positions, one line per resample."""
    chunk = max(1, _BOOTSTRAP_CELLS_PER_CHUNK // rows)
    for start in range(0, resamples, chunk):
        yield rng.integers(0, rows, size=(min(chunk, resamples - start), rows))


def _rank_codes(labels: LabelArray, scores: FloatArray) -> tuple[IndexArray, int]:
    """Code each row as 2 * (rank of its distinct score) + label, and count distinct scores."""
    distinct, rank = np.unique(scores, return_inverse=True)
    return 2 * rank + labels, distinct.size


def _resampled_auc(drawn: IndexArray, codes: IndexArray, groups: int) -> FloatArray:
    """ROC AUC of each resample (Mann-Whitney, ties count half); each needs both classes."""
    offsets = (np.arange(drawn.shape[0]) * 2 * groups)[:, None]
    counts = np.bincount((codes[drawn] + offsets).ravel(), minlength=drawn.shape[0] * 2 * groups)
    counts = counts.reshape(drawn.shape[0], groups, 2)
    negatives, positives = counts[..., 0], counts[..., 1]
    negatives_below = np.cumsum(negatives, axis=1) - negatives
    wins = (positives * (negatives_below + 0.5 * negatives)).sum(axis=1)
    result: FloatArray = wins / (positives.sum(axis=1) * negatives.sum(axis=1))
    return result


def paired_bootstrap_auc_difference(
    y_true: npt.ArrayLike,
    candidate_score: npt.ArrayLike,
    champion_score: npt.ArrayLike,
    resamples: int,
    confidence: float,
    seed: int,
) -> tuple[float, float, float]:
    """Observed candidate-minus-champion ROC AUC and its paired percentile bootstrap interval."""
    labels = checked_labels(y_true)
    candidate = checked_scores(candidate_score, labels.size, "candidate_score")
    champion = checked_scores(champion_score, labels.size, "champion_score")
    if resamples < 1 or not 0.0 < confidence < 1.0:
        raise EvaluationInputError(
            f"expected resamples >= 1 and 0 < confidence < 1; "
            f"found resamples={resamples}, confidence={confidence}"
        )
    observed = float(roc_auc_score(labels, candidate) - roc_auc_score(labels, champion))
    candidate_codes = _rank_codes(labels, candidate)
    champion_codes = _rank_codes(labels, champion)
    differences = []
    for drawn in _resampled_rows(np.random.default_rng(seed), labels.size, resamples):
        drawn_positives = labels[drawn].sum(axis=1)
        # A resample holding one class only has no AUC; it is skipped, not counted.
        drawn = drawn[(drawn_positives > 0) & (drawn_positives < labels.size)]
        differences.append(
            _resampled_auc(drawn, *candidate_codes) - _resampled_auc(drawn, *champion_codes)
        )
    kept = np.concatenate(differences)
    if kept.size == 0:
        raise EvaluationInputError(
            f"expected some bootstrap resamples with both classes; found none of {resamples} "
            f"in {labels.size} rows. Evaluate on a larger holdout."
        )
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(kept, [tail, 1.0 - tail])
    return observed, float(low), float(high)


def champion_gate(
    y_true: npt.ArrayLike,
    candidate_score: npt.ArrayLike,
    champion_score: npt.ArrayLike,
    settings: GateSettings,
    seed: int,
) -> GateResult:
    """Non-inferiority: the interval's lower bound may not fall below minus the margin."""
    difference, low, high = paired_bootstrap_auc_difference(
        y_true,
        candidate_score,
        champion_score,
        resamples=settings.bootstrap_resamples,
        confidence=settings.bootstrap_confidence,
        seed=seed,
    )
    threshold = -settings.non_inferiority_margin
    passed = low >= threshold
    verdict = "within" if passed else "beyond"
    reason = (
        f"ROC AUC difference candidate - champion {difference:+.4f}, "
        f"{settings.bootstrap_confidence:.0%} interval [{low:+.4f}, {high:+.4f}]; "
        f"lower bound {verdict} the non-inferiority margin {threshold:+.4f}"
    )
    return GateResult("champion_comparison", passed, low, threshold, reason)


def _slice_gate(
    name: str,
    labels: LabelArray,
    candidate: FloatArray,
    champion: FloatArray,
    settings: GateSettings,
) -> GateResult:
    """One slice: too small or one-class slices are reported as passed, not gated."""
    if labels.size < settings.min_slice_size:
        reason = f"not gated: {labels.size} rows < {settings.min_slice_size}"
        return GateResult(name, True, None, None, reason)
    if np.unique(labels).size < 2:
        reason = f"not gated: one class only in {labels.size} rows"
        return GateResult(name, True, None, None, reason)
    candidate_auc = float(roc_auc_score(labels, candidate))
    champion_auc = float(roc_auc_score(labels, champion))
    threshold = champion_auc - settings.slice_margin
    passed = candidate_auc >= threshold
    verdict = "meets" if passed else "is below"
    reason = (
        f"candidate ROC AUC {candidate_auc:.4f} {verdict} champion {champion_auc:.4f} "
        f"minus margin {settings.slice_margin:.4f} over {labels.size} rows"
    )
    return GateResult(name, passed, candidate_auc, threshold, reason)


def slice_gates(
    slices: pd.DataFrame,
    y_true: npt.ArrayLike,
    candidate_score: npt.ArrayLike,
    champion_score: npt.ArrayLike,
    settings: GateSettings,
) -> list[GateResult]:
    """Per value of each slice column, the candidate may not trail the champion by > margin."""
    labels = checked_labels(y_true)
    candidate = checked_scores(candidate_score, labels.size, "candidate_score")
    champion = checked_scores(champion_score, labels.size, "champion_score")
    missing = [column for column in settings.slice_columns if column not in slices.columns]
    if missing or len(slices) != labels.size:
        raise EvaluationInputError(
            f"expected slices with columns {list(settings.slice_columns)} and {labels.size} rows; "
            f"found missing columns {missing} and {len(slices)} rows"
        )
    results = []
    for column in settings.slice_columns:
        groups = slices.groupby(column, dropna=False, sort=True, observed=True).indices
        for value, rows in groups.items():
            name = f"slice.{column}={value}"
            results.append(
                _slice_gate(name, labels[rows], candidate[rows], champion[rows], settings)
            )
    return results


def evaluate_gates(
    y_true: npt.ArrayLike,
    candidate_score: npt.ArrayLike,
    champion_score: npt.ArrayLike | None,
    slices: pd.DataFrame,
    settings: GateSettings,
    seed: int,
) -> GateReport:
    """Absolute gates always; champion and slice gates when there is a champion to beat."""
    results = absolute_gates(compute_metrics(y_true, candidate_score), settings)
    if champion_score is None:
        reason = "no champion yet: absolute gates only"
        results.append(GateResult("champion_comparison", True, None, None, reason))
        return GateReport(tuple(results))
    results.append(champion_gate(y_true, candidate_score, champion_score, settings, seed))
    results.extend(slice_gates(slices, y_true, candidate_score, champion_score, settings))
    return GateReport(tuple(results))
