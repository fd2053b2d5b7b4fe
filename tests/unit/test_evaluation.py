"""Unit tests of holdout metrics and promotion gates on small inline arrays."""

from __future__ import annotations

import json
import time

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlops_flows.logic.evaluation import (
    EvaluationInputError,
    GateReport,
    GateResult,
    absolute_gates,
    champion_gate,
    compute_metrics,
    evaluate_gates,
    expected_calibration_error,
    paired_bootstrap_auc_difference,
    slice_gates,
)
from mlops_flows.settings import GateSettings

# The key rule MLflow applies to tag names on every platform (mlflow/utils/validation.py).


def synthetic(
    rows: int, signal: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Calibrated probabilities (labels drawn from them) whose spread grows with signal."""
    rng = np.random.default_rng(seed)
    scores = 1.0 / (1.0 + np.exp(-signal * rng.normal(size=rows)))
    return (rng.random(rows) < scores).astype(np.int64), scores


def noisy_copy(scores: npt.NDArray[np.float64], seed: int) -> npt.NDArray[np.float64]:
    """Scores with most of their ranking destroyed."""
    rng = np.random.default_rng(seed)
    return np.clip(0.2 * scores + 0.8 * rng.random(scores.size), 0.0, 1.0)


@pytest.fixture
def settings() -> GateSettings:
    """The library's gates, sliced by the columns these frames carry (no slices by default)."""
    return GateSettings(slice_columns=("plan", "region"))


PASSING_METRICS = {"roc_auc": 0.80, "log_loss": 0.40, "calibration_error": 0.02}
THRESHOLD_FIELD = {
    "roc_auc": "min_roc_auc",
    "log_loss": "max_log_loss",
    "calibration_error": "max_calibration_error",
}


@pytest.mark.parametrize(
    ("metric", "value", "passed"),
    [
        ("roc_auc", 0.70, True),
        ("roc_auc", 0.6999, False),
        ("roc_auc", 0.95, True),
        ("log_loss", 0.60, True),
        ("log_loss", 0.6001, False),
        ("calibration_error", 0.08, True),
        ("calibration_error", 0.0801, False),
        ("calibration_error", float("nan"), False),
    ],
)
def test_absolute_gates_at_the_boundary(
    metric: str, value: float, passed: bool, settings: GateSettings
) -> None:
    results = {r.name: r for r in absolute_gates({**PASSING_METRICS, metric: value}, settings)}

    assert list(results) == ["roc_auc", "log_loss", "calibration_error"]
    assert results[metric].passed is passed
    assert all(r.passed for name, r in results.items() if name != metric)
    assert results[metric].threshold == getattr(settings, THRESHOLD_FIELD[metric])


def test_absolute_gates_name_missing_metrics(settings: GateSettings) -> None:
    with pytest.raises(EvaluationInputError, match=r"missing \['log_loss'\]"):
        absolute_gates({"roc_auc": 0.8, "calibration_error": 0.01}, settings)


@pytest.mark.parametrize(
    ("labels", "scores", "bins", "expected"),
    [
        ([0, 0, 1, 1], [0.1, 0.1, 0.9, 0.9], 10, 0.1),
        ([1, 0, 0, 0], [0.25, 0.25, 0.25, 0.25], 10, 0.0),
        ([1, 0], [1.0, 0.0], 10, 0.0),  # a score of 1.0 falls in the last bin
        ([0, 1, 0, 0], [0.3, 0.3, 0.7, 0.7], 10, 0.5 * 0.2 + 0.5 * 0.7),
        ([0, 1, 1, 1], [0.2, 0.4, 0.6, 0.8], 2, 0.5 * 0.2 + 0.5 * 0.3),
    ],
)
def test_expected_calibration_error_by_hand(
    labels: list[int], scores: list[float], bins: int, expected: float
) -> None:
    assert expected_calibration_error(labels, scores, bins=bins) == pytest.approx(expected)


def test_compute_metrics_by_hand() -> None:
    metrics = compute_metrics([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])

    assert metrics == pytest.approx(
        {
            "roc_auc": 0.75,
            "log_loss": -np.mean(np.log([0.9, 0.6, 0.35, 0.8])),
            "brier": (0.01 + 0.16 + 0.4225 + 0.04) / 4,
            "calibration_error": (0.1 + 0.4 + 0.65 + 0.2) / 4,
            "accuracy": 0.75,
            "precision": 1.0,
            "recall": 0.5,
            "positive_rate": 0.25,
        }
    )


def test_compute_metrics_clips_certain_wrong_scores_for_log_loss() -> None:
    metrics = compute_metrics([1, 0], [0.0, 1.0])

    assert np.isfinite(metrics["log_loss"])
    assert metrics["log_loss"] == pytest.approx(-np.log(1e-15), rel=1e-3)


@pytest.mark.parametrize(
    ("labels", "scores", "message"),
    [
        ([0, 1, 1], [0.2, 0.7], r"expected y_score as 3 scores.*found shape \(2,\)"),
        ([1, 1, 1], [0.2, 0.7, 0.9], r"expected both classes.*only class 1 in 3 rows"),
        ([0, 1, 2], [0.2, 0.7, 0.9], r"expected y_true of 0/1 labels; found values \[2\]"),
        ([[0, 1], [1, 0]], [0.2, 0.7], r"expected y_true one-dimensional; found shape \(2, 2\)"),
        ([0, 1, 1], [0.2, 1.3, 0.9], r"expected y_score within \[0, 1\].*max 1.3"),
        ([0, 1, 1], [-0.1, 0.5, 0.9], r"expected y_score within \[0, 1\].*min -0.1"),
        ([0, 1, 1], [0.2, float("nan"), 0.9], r"expected finite y_score; found NaN"),
    ],
)
def test_invalid_inputs_raise_with_expected_and_found(
    labels: list[int], scores: list[float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        compute_metrics(labels, scores)


def test_boolean_and_float_labels_are_accepted() -> None:
    scores = [0.2, 0.8, 0.6]
    assert compute_metrics([False, True, True], scores) == compute_metrics([0.0, 1.0, 1.0], scores)


def test_bootstrap_is_deterministic_for_a_seed() -> None:
    labels, candidate = synthetic(2_000, signal=1.0, seed=1)
    champion = noisy_copy(candidate, seed=2)

    first = paired_bootstrap_auc_difference(labels, candidate, champion, 200, 0.95, seed=7)
    again = paired_bootstrap_auc_difference(labels, candidate, champion, 200, 0.95, seed=7)
    other = paired_bootstrap_auc_difference(labels, candidate, champion, 200, 0.95, seed=8)

    assert first == again
    assert first[1:] != other[1:]
    assert first[0] == other[0]


def test_clearly_better_candidate_gives_a_positive_interval() -> None:
    labels, candidate = synthetic(2_000, signal=1.5, seed=3)
    champion = noisy_copy(candidate, seed=4)

    difference, low, high = paired_bootstrap_auc_difference(
        labels, candidate, champion, resamples=300, confidence=0.95, seed=0
    )

    expected = roc_auc_score(labels, candidate) - roc_auc_score(labels, champion)
    assert difference == pytest.approx(expected)
    assert 0.0 < low <= difference <= high


def test_bootstrap_is_paired() -> None:
    """Identical models differ by exactly zero on every resample only if rows are shared."""
    labels, scores = synthetic(500, signal=1.0, seed=5)

    assert paired_bootstrap_auc_difference(labels, scores, scores, 100, 0.9, seed=0) == (
        0.0,
        0.0,
        0.0,
    )


def test_bootstrap_skips_one_class_resamples() -> None:
    labels = np.array([0] * 9 + [1])
    candidate = np.linspace(0.05, 0.95, 10)

    difference, low, high = paired_bootstrap_auc_difference(
        labels, candidate, candidate[::-1], resamples=200, confidence=0.95, seed=0
    )

    assert difference == pytest.approx(1.0)
    assert np.isfinite([low, high]).all()
    assert low <= high


@pytest.mark.parametrize(("resamples", "confidence"), [(0, 0.95), (100, 1.0), (100, 0.0)])
def test_bootstrap_rejects_bad_settings(resamples: int, confidence: float) -> None:
    labels, scores = synthetic(100, signal=1.0, seed=0)
    with pytest.raises(EvaluationInputError, match="expected resamples >= 1"):
        paired_bootstrap_auc_difference(labels, scores, scores, resamples, confidence, seed=0)


def test_bootstrap_of_300_resamples_on_20k_rows_is_fast() -> None:
    labels, candidate = synthetic(20_000, signal=1.0, seed=6)
    champion = noisy_copy(candidate, seed=7)

    started = time.perf_counter()
    paired_bootstrap_auc_difference(labels, candidate, champion, 300, 0.95, seed=0)

    assert time.perf_counter() - started < 2.0


def test_champion_gate_passes_an_equal_candidate(settings: GateSettings) -> None:
    labels, scores = synthetic(1_000, signal=1.0, seed=8)

    result = champion_gate(labels, scores, scores, settings, seed=0)

    assert result == GateResult(
        "champion_comparison", True, 0.0, -settings.non_inferiority_margin, result.reason
    )
    assert "interval [+0.0000, +0.0000]" in result.reason


def test_champion_gate_fails_a_clearly_worse_candidate(settings: GateSettings) -> None:
    labels, champion = synthetic(2_000, signal=1.5, seed=9)
    candidate = noisy_copy(champion, seed=10)

    result = champion_gate(labels, candidate, champion, settings, seed=0)

    assert not result.passed
    assert result.observed is not None
    assert result.observed < -settings.non_inferiority_margin
    assert "difference candidate - champion -" in result.reason
    assert "beyond the non-inferiority margin" in result.reason


@pytest.fixture
def sliced_holdout() -> tuple[pd.DataFrame, npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """1000 `basic`, 1000 `pro` and 50 `trial` rows; region is one value for all."""
    labels, scores = synthetic(2_050, signal=1.5, seed=11)
    plan = ["basic"] * 1_000 + ["pro"] * 1_000 + ["trial"] * 50
    slices = pd.DataFrame({"plan": plan, "region": "eu"}, index=np.arange(2_050) + 100)
    return slices, labels, scores


def test_slice_gates_fail_a_regressing_slice_and_skip_small_ones(
    sliced_holdout: tuple[pd.DataFrame, npt.NDArray[np.int64], npt.NDArray[np.float64]],
    settings: GateSettings,
) -> None:
    slices, labels, champion = sliced_holdout
    candidate = champion.copy()
    candidate[:1_000] = noisy_copy(champion[:1_000], seed=12)  # basic regresses

    results = {r.name: r for r in slice_gates(slices, labels, candidate, champion, settings)}

    assert list(results) == [
        "slice.plan=basic",
        "slice.plan=pro",
        "slice.plan=trial",
        "slice.region=eu",
    ]
    assert not results["slice.plan=basic"].passed
    assert results["slice.plan=pro"].passed
    assert results["slice.plan=pro"].observed == pytest.approx(
        roc_auc_score(labels[1_000:2_000], candidate[1_000:2_000])
    )
    assert results["slice.plan=trial"] == GateResult(
        "slice.plan=trial", True, None, None, "not gated: 50 rows < 200"
    )


def test_slice_with_one_class_is_not_gated(settings: GateSettings) -> None:
    labels = np.array([0, 1] * 150 + [1] * 250)
    scores = np.linspace(0.01, 0.99, labels.size)
    slices = pd.DataFrame({"plan": ["basic"] * 300 + ["pro"] * 250, "region": "eu"})

    results = {r.name: r for r in slice_gates(slices, labels, scores, scores, settings)}

    assert results["slice.plan=pro"].passed
    assert results["slice.plan=pro"].reason == "not gated: one class only in 250 rows"


def test_slice_gates_require_the_slice_columns(settings: GateSettings) -> None:
    labels, scores = synthetic(10, signal=1.0, seed=0)
    with pytest.raises(EvaluationInputError, match=r"missing columns \['region'\]"):
        slice_gates(pd.DataFrame({"plan": ["basic"] * 10}), labels, scores, scores, settings)


def test_first_model_passes_on_absolute_gates_alone(settings: GateSettings) -> None:
    labels, scores = synthetic(1_000, signal=2.0, seed=13)

    report = evaluate_gates(labels, scores, None, pd.DataFrame(), settings, seed=0)

    assert [r.name for r in report.results] == [
        "roc_auc",
        "log_loss",
        "calibration_error",
        "champion_comparison",
    ]
    assert report.passed
    assert report.results[-1] == GateResult(
        "champion_comparison", True, None, None, "no champion yet: absolute gates only"
    )


def test_first_model_still_fails_a_weak_absolute_gate(settings: GateSettings) -> None:
    labels, scores = synthetic(1_000, signal=0.1, seed=14)

    report = evaluate_gates(labels, scores, None, pd.DataFrame(), settings, seed=0)

    assert not report.passed
    assert "roc_auc" in [r.name for r in report.failures]


def test_evaluate_gates_with_a_champion_adds_comparison_and_slices(
    sliced_holdout: tuple[pd.DataFrame, npt.NDArray[np.int64], npt.NDArray[np.float64]],
    settings: GateSettings,
) -> None:
    slices, labels, scores = sliced_holdout

    report = evaluate_gates(labels, scores, scores, slices, settings, seed=0)

    assert report.passed
    assert [r.name for r in report.results][3:] == [
        "champion_comparison",
        "slice.plan=basic",
        "slice.plan=pro",
        "slice.plan=trial",
        "slice.region=eu",
    ]


REPORT = GateReport(
    (
        GateResult("roc_auc", True, 0.81234567, 0.7, "roc_auc meets the minimum"),
        GateResult("log_loss", False, 0.65, 0.6, "log_loss exceeds the maximum"),
        GateResult("slice.plan=basic", False, 0.7, 0.75, "below champion"),
        GateResult("slice.plan=trial", True, None, None, "not gated: 50 rows < 200"),
    )
)


def test_report_summary_names_each_failure() -> None:
    assert not REPORT.passed
    assert [r.name for r in REPORT.failures] == ["log_loss", "slice.plan=basic"]
    assert REPORT.summary() == (
        "2 of 4 gates failed: log_loss (observed 0.6500 vs threshold 0.6000); "
        "slice.plan=basic (observed 0.7000 vs threshold 0.7500)"
    )
    assert GateReport(REPORT.results[:1]).summary() == "all 1 gates passed"


def test_report_rows_are_json_safe_and_rounded() -> None:
    rows = GateReport((*REPORT.results, GateResult("odd", False, float("nan"), 1.0, "x"))).to_rows()

    assert rows[0] == {
        "gate": "roc_auc",
        "passed": True,
        "observed": 0.8123,
        "threshold": 0.7,
        "reason": "roc_auc meets the minimum",
    }
    assert rows[3]["observed"] is None
    assert rows[3]["threshold"] is None
    assert rows[4]["observed"] is None
    json.dumps(rows, allow_nan=False)


def test_calibration_needs_at_least_one_bin() -> None:
    with pytest.raises(EvaluationInputError, match="at least 1 bin; found 0"):
        expected_calibration_error([0, 1], [0.2, 0.8], bins=0)
