"""Evaluation figures of a binary classifier; matplotlib is imported only when a figure is drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from mlops_flows.logic.evaluation import (
    DECISION_THRESHOLD,
    checked_labels,
    checked_scores,
    expected_calibration_error,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _figure(width: float = 6.0, height: float = 5.0) -> tuple[Figure, Axes]:
    """A figure with one axes, built without pyplot so no backend or global state is touched."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    return figure, figure.subplots()


def roc_curve_figure(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, champion_score: npt.ArrayLike | None = None
) -> Figure:
    """ROC curve of the candidate, and of the champion when given, against chance."""
    labels = checked_labels(y_true)
    curves = {"candidate": checked_scores(y_score, labels.size, "y_score")}
    if champion_score is not None:
        curves["champion"] = checked_scores(champion_score, labels.size, "champion_score")
    figure, axes = _figure()
    for name, scores in curves.items():
        false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores)
        label = f"{name} (AUC {roc_auc_score(labels, scores):.3f})"
        axes.plot(false_positive_rate, true_positive_rate, label=label)
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="chance")
    axes.set(title="ROC curve", xlabel="False positive rate", ylabel="True positive rate")
    axes.legend(loc="lower right")
    return figure


def calibration_figure(y_true: npt.ArrayLike, y_score: npt.ArrayLike, bins: int = 10) -> Figure:
    """Observed positive rate per equal-width score bin against perfect calibration."""
    labels = checked_labels(y_true)
    scores = checked_scores(y_score, labels.size)
    observed, predicted = calibration_curve(labels, scores, n_bins=bins, strategy="uniform")
    error = expected_calibration_error(labels, scores, bins=bins)
    figure, axes = _figure()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    axes.plot(predicted, observed, marker="o", label=f"model (ECE {error:.3f})")
    axes.set(
        title="Calibration",
        xlabel="Mean predicted probability",
        ylabel="Observed positive rate",
        xlim=(0, 1),
        ylim=(0, 1),
    )
    axes.legend(loc="upper left")
    return figure


def confusion_matrix_figure(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, threshold: float = DECISION_THRESHOLD
) -> Figure:
    """Counts of true and predicted labels with scores at or above the threshold as positive."""
    labels = checked_labels(y_true)
    predicted = (checked_scores(y_score, labels.size) >= threshold).astype(np.int64)
    counts = confusion_matrix(labels, predicted, labels=[0, 1])
    figure, axes = _figure(width=5.0, height=4.5)
    axes.imshow(counts, cmap="Blues")
    for (row, column), count in np.ndenumerate(counts):
        color = "white" if count > counts.max() / 2 else "black"
        axes.text(column, row, str(count), ha="center", va="center", color=color)
    axes.set(
        title=f"Confusion matrix (threshold {threshold:.2f})",
        xlabel="Predicted label",
        ylabel="True label",
        xticks=[0, 1],
        yticks=[0, 1],
    )
    return figure


def feature_importance_figure(
    importances: pd.Series,
    title: str = "Permutation importance",
    xlabel: str = "Mean decrease in ROC AUC",
) -> Figure:
    """Horizontal bars, the most important feature on top."""
    if importances.empty:
        raise ValueError("expected at least one feature importance; found an empty series")
    ordered = importances.sort_values(ascending=True)
    figure, axes = _figure(height=max(2.5, 0.35 * ordered.size + 1.0))
    axes.barh([str(name) for name in ordered.index], ordered.to_numpy(dtype=np.float64))
    axes.axvline(0.0, color="grey", linewidth=0.8)
    axes.set(title=title, xlabel=xlabel)
    return figure


def permutation_importances(
    model: Any,
    features: pd.DataFrame,
    y_true: npt.ArrayLike,
    seed: int,
    max_rows: int = 2000,
    repeats: int = 3,
    threads: int = 1,
) -> pd.Series:
    """Mean drop in ROC AUC when each column is shuffled, on a seeded sample of rows."""
    from threadpoolctl import threadpool_limits

    labels = checked_labels(y_true)
    if len(features) != labels.size:
        raise ValueError(
            f"expected features with {labels.size} rows like y_true; found {len(features)}"
        )
    rows = np.arange(labels.size)
    if labels.size > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(labels.size, max_rows, replace=False))
    sample = checked_labels(labels[rows])  # a sample with one class only has no ROC AUC
    with threadpool_limits(limits=threads):  # many small predicts: threads only contend
        result = permutation_importance(
            model,
            features.iloc[rows],
            sample,
            scoring="roc_auc",
            n_repeats=repeats,
            random_state=seed,
        )
    importances = pd.Series(result.importances_mean, index=features.columns, name="importance")
    return importances.sort_values(ascending=False)
