"""Unit tests of the reproduction's comparisons: which check differs, and what that means."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_flows.logic.keys import TrainingSetKeys
from mlops_flows.logic.reproduction_checks import (
    Check,
    Observed,
    ReproductionReport,
    compare_lineage,
    compare_metrics,
    compare_predictions,
    compare_split,
)
from mlops_flows.logic.training import split_by_time
from mlops_flows.ops.lineage import NOT_RECORDED, CodeVersion
from mlops_flows.registry.reproduce import holdout_days
from tests.support import sample_lineage

COMMIT = "1" * 40
RECORDED = sample_lineage(
    code_commit=COMMIT,
    training_set_rows=1000,
    parameters={"max_iter": 20},
    entity_rows_digest="e" * 64,
)
SAME = Observed(
    code=CodeVersion(COMMIT, dirty=False),
    lock_digest="a" * 64,
    suite_name="training_set",
    suite_digest="d" * 64,
    suite_success=True,
    feature_service="churn_model_v1",
    feature_service_digest="b" * 64,
    entity_rows_digest="e" * 64,
    training_set_digest="c" * 64,
    training_set_rows=1000,
)


def differing(checks: list[Check]) -> dict[str, str]:
    """Name -> meaning of every check that differs."""
    return {check.name: check.meaning for check in checks if check.match is False}


def test_nothing_changed_means_every_check_matches() -> None:
    checks = compare_lineage(RECORDED, SAME)
    assert all(check.match is True for check in checks), checks
    assert {check.name for check in checks} == {
        "code_commit",
        "code_dirty",
        "lock_digest",
        "suite_digest",
        "suite_result",
        "feature_service_digest",
        "entity_rows_digest",
        "training_set_rows",
        "training_set_digest",
    }


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"training_set_digest": "f" * 64},
            {"training_set_digest": "data changed: feature values in the sources differ"},
        ),
        (
            {"entity_rows_digest": "f" * 64, "training_set_digest": "f" * 64},
            {
                "entity_rows_digest": "data changed: the label rows",
                "training_set_digest": "data changed: follows from the changed label rows",
            },
        ),
        (
            {"feature_service_digest": "f" * 64, "training_set_digest": "f" * 64},
            {
                "feature_service_digest": "features changed",
                "training_set_digest": "follows from the changed feature definition",
            },
        ),
        ({"code": CodeVersion("2" * 40, dirty=False)}, {"code_commit": "code changed"}),
        ({"code": CodeVersion(COMMIT, dirty=True)}, {"code_dirty": "code changed"}),
        ({"lock_digest": "f" * 64}, {"lock_digest": "lock changed"}),
        ({"lock_digest": "missing"}, {"lock_digest": "lock changed"}),
        ({"suite_digest": "f" * 64}, {"suite_digest": "suite changed"}),
        ({"suite_success": False}, {"suite_result": "data changed"}),
        ({"training_set_rows": 999}, {"training_set_rows": "data changed"}),
    ],
)
def test_each_change_is_named_by_its_check_alone(
    change: dict[str, Any], expected: dict[str, str]
) -> None:
    found = differing(compare_lineage(RECORDED, dataclasses.replace(SAME, **change)))
    assert set(found) == set(expected)
    for name, meaning in expected.items():
        assert found[name].startswith(meaning), found[name]


def test_changed_feature_values_are_not_called_changed_features() -> None:
    checks = compare_lineage(RECORDED, dataclasses.replace(SAME, training_set_digest="f" * 64))
    assert not any("features changed" in check.meaning for check in checks)


def test_a_version_without_label_rows_digest_reports_it_not_recorded() -> None:
    older = dataclasses.replace(RECORDED, entity_rows_digest=NOT_RECORDED)
    changed = dataclasses.replace(SAME, training_set_digest="f" * 64)
    checks = {check.name: check for check in compare_lineage(older, changed)}
    assert checks["entity_rows_digest"].match is None
    assert checks["entity_rows_digest"].expected == NOT_RECORDED
    assert checks["training_set_digest"].meaning.startswith(
        "data changed: feature values or label rows differ"
    )


def test_uncommitted_changes_then_and_now_cannot_be_compared() -> None:
    dirty = dataclasses.replace(RECORDED, code_dirty=True)
    now = dataclasses.replace(SAME, code=CodeVersion(COMMIT, dirty=True))
    (check,) = [c for c in compare_lineage(dirty, now) if c.name == "code_dirty"]
    assert check.match is None
    assert "cannot be proven the same" in check.meaning


def test_a_commit_recorded_outside_git_is_unknown() -> None:
    outside = dataclasses.replace(RECORDED, code_commit="unknown", code_dirty=True)
    (check,) = [c for c in compare_lineage(outside, SAME) if c.name == "code_commit"]
    assert check.match is None


def test_digests_are_shown_short() -> None:
    checks = {c.name: c for c in compare_lineage(RECORDED, SAME)}
    assert checks["training_set_digest"].expected == "c" * 12
    assert checks["suite_digest"].found == "training_set " + "d" * 12
    assert checks["code_commit"].expected == "1" * 12


METRICS = {"roc_auc": 0.8123456789012345, "log_loss": 0.41}


def test_metrics_equal_bit_for_bit_match() -> None:
    logged = {f"holdout_{name}": value for name, value in METRICS.items()}
    check = compare_metrics("holdout", {**logged, "cost_wall_seconds": 3.0}, METRICS)
    assert check.match is True
    assert check.found == "all 2 equal"


def test_a_metric_one_ulp_apart_differs_and_is_named() -> None:
    logged = {f"holdout_{name}": value for name, value in METRICS.items()}
    moved = {**METRICS, "roc_auc": float(np.nextafter(METRICS["roc_auc"], 1.0))}
    check = compare_metrics("holdout", logged, moved)
    assert check.match is False
    assert "roc_auc" in check.found
    assert "log_loss" not in check.found


def test_a_metric_missing_from_the_run_differs() -> None:
    check = compare_metrics("train", {"train_roc_auc": METRICS["roc_auc"]}, METRICS)
    assert check.match is False
    assert "log_loss None" in check.found


SCORES = np.array([0.1, 0.5, 0.9])


@pytest.mark.parametrize(
    ("registered", "match", "found"),
    [
        (SCORES.copy(), True, "bit-identical"),
        (np.array([0.1, 0.5, np.nextafter(0.9, 1.0)]), False, "1 of 3 differ"),
        (SCORES[:2], False, "2 registered vs 3 retrained"),
        ("the registered model cannot score it", False, "the registered model cannot score it"),
    ],
)
def test_predictions_must_be_bit_identical(
    registered: np.ndarray | str, match: bool, found: str
) -> None:
    check = compare_predictions("3", registered, SCORES)
    assert check.match is match
    assert check.found.startswith(found)
    assert check.expected == "v3 scores on 3 holdout rows"


KEYS = TrainingSetKeys("customer_id", "event_timestamp", "churned")


@pytest.fixture
def frame() -> pd.DataFrame:
    stamps = pd.date_range("2026-06-01 06:00", periods=6, freq="7D", tz="UTC")
    return pd.DataFrame(
        {"customer_id": range(6), "event_timestamp": stamps, "churned": [0, 1, 0, 1, 0, 1]}
    )


def test_holdout_days_come_back_from_the_logged_cutoff(frame: pd.DataFrame) -> None:
    split = split_by_time(frame, KEYS, 14)
    logged = {"holdout_cutoff": split.cutoff.isoformat()}
    assert holdout_days(logged, frame, KEYS.timestamp) == 14


def test_the_split_check_compares_cutoff_and_rows(frame: pd.DataFrame) -> None:
    split = split_by_time(frame, KEYS, 14)
    logged = {"holdout_cutoff": split.cutoff.isoformat(), "train_rows": "4", "holdout_rows": "2"}
    assert compare_split(logged, split).match is True
    assert compare_split({**logged, "train_rows": "5"}, split).match is False


def report(*matches: bool | None) -> ReproductionReport:
    checks = tuple(
        Check(f"check_{i}", "x", "y", match, "" if match else f"meaning {i}")
        for i, match in enumerate(matches)
    )
    return ReproductionReport("churn", "3", "run-1", checks)


def test_a_report_is_exact_when_nothing_differs_even_if_something_is_unknown() -> None:
    assert report(True, None, True).exact is True
    assert "reproduced exactly" in report(True, None).verdict()


def test_a_report_names_every_difference() -> None:
    differs = report(True, False, None, False)
    assert differs.exact is False
    assert [check.name for check in differs.differences] == ["check_1", "check_3"]
    assert "check_1: meaning 1; check_3: meaning 3" in differs.verdict()


def test_the_text_table_lists_every_check_and_the_verdict() -> None:
    text = report(True, False, None).to_text()
    lines = text.splitlines()
    assert lines[0].split() == ["check", "expected", "found", "outcome", "meaning"]
    assert lines[1].split() == ["check_0", "x", "y", "same"]
    assert lines[2].split() == ["check_1", "x", "y", "DIFFERS", "meaning", "1"]
    assert lines[3].split() == ["check_2", "x", "y", "unknown", "meaning", "2"]
    assert lines[-1] == report(True, False, None).verdict()
