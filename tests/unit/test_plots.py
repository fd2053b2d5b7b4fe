"""Unit tests of evaluation figures and permutation importances on small inline data."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from matplotlib.figure import Figure
from sklearn.linear_model import LogisticRegression

from mlops_flows.logic.plots import (
    calibration_figure,
    confusion_matrix_figure,
    feature_importance_figure,
    permutation_importances,
    roc_curve_figure,
)

Holdout = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


@pytest.fixture
def holdout() -> Holdout:
    """200 calibrated scores with labels drawn from them."""
    rng = np.random.default_rng(0)
    scores = rng.random(200)
    return (rng.random(200) < scores).astype(np.int64), scores


def test_roc_curve_figure_draws_candidate_champion_and_chance(holdout: Holdout) -> None:
    labels, scores = holdout

    axes = roc_curve_figure(labels, scores, champion_score=scores[::-1]).axes[0]

    assert axes.get_title() == "ROC curve"
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("False positive rate", "True positive rate")
    legend = axes.get_legend()
    assert legend is not None
    entries = [text.get_text().split(" ")[0] for text in legend.get_texts()]
    assert entries == ["candidate", "champion", "chance"]


def test_roc_curve_figure_without_champion(holdout: Holdout) -> None:
    axes = roc_curve_figure(*holdout).axes[0]

    names = [str(line.get_label()).split(" ")[0] for line in axes.get_lines()]
    assert names == ["candidate", "chance"]


def test_calibration_figure_labels_and_ece(holdout: Holdout) -> None:
    axes = calibration_figure(*holdout, bins=5).axes[0]

    assert axes.get_title() == "Calibration"
    assert axes.get_xlabel() == "Mean predicted probability"
    assert axes.get_ylabel() == "Observed positive rate"
    model_line = axes.get_lines()[1]
    assert "ECE" in str(model_line.get_label())
    assert np.size(model_line.get_xdata()) == 5


def test_confusion_matrix_figure_counts_every_row(holdout: Holdout) -> None:
    axes = confusion_matrix_figure(*holdout, threshold=0.3).axes[0]

    assert axes.get_title() == "Confusion matrix (threshold 0.30)"
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("Predicted label", "True label")
    assert sum(int(text.get_text()) for text in axes.texts) == 200


def test_feature_importance_figure_puts_the_largest_on_top() -> None:
    importances = pd.Series({"tenure": 0.02, "support_calls": 0.15, "noise": -0.01})

    axes = feature_importance_figure(importances).axes[0]

    assert axes.get_title() == "Permutation importance"
    assert axes.get_xlabel() == "Mean decrease in ROC AUC"
    # barh draws the first category at the bottom, so the top bar is the last tick.
    assert [label.get_text() for label in axes.get_yticklabels()] == [
        "noise",
        "tenure",
        "support_calls",
    ]


def test_feature_importance_figure_rejects_an_empty_series() -> None:
    with pytest.raises(ValueError, match="found an empty series"):
        feature_importance_figure(pd.Series(dtype=float))


@pytest.mark.parametrize(
    "draw",
    [
        lambda labels, scores: roc_curve_figure(labels, scores, champion_score=scores),
        calibration_figure,
        confusion_matrix_figure,
        lambda labels, scores: feature_importance_figure(pd.Series({"a": 0.1, "b": 0.2})),
    ],
    ids=["roc", "calibration", "confusion", "importance"],
)
def test_figures_save_to_png(
    draw: Callable[[npt.NDArray[np.int64], npt.NDArray[np.float64]], Figure],
    holdout: Holdout,
    tmp_path: Path,
) -> None:
    figure = draw(*holdout)
    path = tmp_path / "figure.png"

    figure.savefig(path)

    assert isinstance(figure, Figure)
    assert path.read_bytes().startswith(b"\x89PNG")
    assert path.stat().st_size > 1_000


@pytest.fixture
def fitted_model() -> tuple[LogisticRegression, pd.DataFrame, npt.NDArray[np.int64]]:
    """A logistic regression on one informative column and one noise column."""
    rng = np.random.default_rng(1)
    features = pd.DataFrame({"noise": rng.normal(size=600), "informative": rng.normal(size=600)})
    labels = np.asarray(features["informative"] + 0.3 * rng.normal(size=600) > 0, dtype=np.int64)
    return LogisticRegression().fit(features, labels), features, labels


def test_permutation_importances_rank_the_informative_column_first(
    fitted_model: tuple[LogisticRegression, pd.DataFrame, npt.NDArray[np.int64]],
) -> None:
    model, features, labels = fitted_model

    importances = permutation_importances(model, features, labels, seed=0, max_rows=400)

    assert list(importances.index) == ["informative", "noise"]
    assert importances["informative"] > 0.2 > abs(importances["noise"])


def test_permutation_importances_are_seeded(
    fitted_model: tuple[LogisticRegression, pd.DataFrame, npt.NDArray[np.int64]],
) -> None:
    model, features, labels = fitted_model

    first = permutation_importances(model, features, labels, seed=3, max_rows=100)
    again = permutation_importances(model, features, labels, seed=3, max_rows=100)

    pd.testing.assert_series_equal(first, again)


def test_permutation_importances_need_one_row_per_label(
    fitted_model: tuple[LogisticRegression, pd.DataFrame, npt.NDArray[np.int64]],
) -> None:
    model, features, labels = fitted_model

    with pytest.raises(ValueError, match="expected features with 599 rows"):
        permutation_importances(model, features, labels[:-1], seed=0)
