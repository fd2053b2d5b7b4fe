"""Unit tests of the model card's markdown, from inline facts."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from mlops_flows.logic.model_card import (
    DESCRIPTION_LIMIT,
    LIBRARY_LIMITS,
    CardFacts,
    approval_status,
    render,
)

DIGEST = "c" * 64


def gate(name: str, passed: bool, observed: float | None, threshold: float | None) -> Any:
    return {
        "gate": name,
        "passed": passed,
        "observed": observed,
        "threshold": threshold,
        "reason": f"{name} reason",
    }


FACTS = CardFacts(
    model_name="churn",
    version="3",
    run_id="run-3",
    version_tags={
        "status": "champion",
        "promoted_at": "2026-07-01T03:00:00+00:00",
        "promoted_by": "prefect-flow-run:abc",
        "promotion_reason": "gates passed; policy auto",
        "previous_champion": "2",
        "lineage.seed": "42",
    },
    metrics={
        "holdout_roc_auc": 0.81234,
        "train_roc_auc": 0.9,
        "champion_holdout_roc_auc": 0.8,
        "holdout_log_loss": 0.4,
        "cost_wall_seconds": 12.0,
    },
    parameters={"holdout_cutoff": "2026-06-09T06:00:00+00:00", "train_rows": "4800"},
    gates=[
        gate("roc_auc", True, 0.81234, 0.7),
        gate("champion_comparison", True, -0.004, -0.01),
        gate("slice.plan=basic", True, 0.79, 0.77),
        gate("slice.region=north", False, 0.7, 0.75),
    ],
    gates_passed=False,
    lineage={
        "label_window_start": "2026-04-07T06:00:00+00:00",
        "label_window_end": "2026-06-30T06:00:00+00:00",
        "training_set_rows": 6600,
        "training_set_digest": DIGEST,
        "entity_rows_digest": "e" * 64,
        "feature_service": "churn_model_v1",
        "feature_service_digest": "b" * 64,
        "suite_name": "training_set",
        "suite_digest": "d" * 64,
        "suite_success": True,
        "code_commit": "1" * 40,
        "code_dirty": False,
        "lock_digest": "a" * 64,
        "seed": 42,
    },
    features=[("plan", "string"), ("tenure_months", "long")],
    values_seen={"plan": ["basic", "premium", "standard"]},
    intended_use="Ranks subscribers by churn risk for retention offers.",
    known_limits=["Trained on simulated data."],
)


def test_every_section_is_present_in_order() -> None:
    headings = re.findall(r"^#+ (.+)$", render(FACTS), flags=re.MULTILINE)
    assert headings == [
        "churn v3",
        "Intended use",
        "Training data",
        "Features",
        "Metrics",
        "Metrics by slice (holdout ROC AUC)",
        "Gates",
        "Approval and promotion",
        "Known limits",
    ]


def test_the_use_cases_words_open_the_card_and_close_its_limits() -> None:
    card = render(FACTS)
    assert "## Intended use\n\nRanks subscribers by churn risk for retention offers." in card
    limits = card.split("## Known limits\n\n")[1].splitlines()
    assert limits[0].startswith("- Trained on labels from 2026-04-07T06:00:00+00:00")
    assert limits[-3:] == [
        f"- {limit}" for limit in (*LIBRARY_LIMITS, "Trained on simulated data.")
    ]


def test_the_record_is_shown_with_full_digests() -> None:
    card = render(FACTS)
    for shown in (
        "Labels from 2026-04-07T06:00:00+00:00 to 2026-06-30T06:00:00+00:00: 6600 rows",
        "holdout after 2026-06-09T06:00:00+00:00 (4800 train / ? holdout rows)",
        f"Training set sha256 `{DIGEST}`; label rows sha256 `{'e' * 64}`",
        f"Feature service `churn_model_v1`, definition sha256 `{'b' * 64}`",
        f"Suite `training_set` sha256 `{'d' * 64}`: passed",
        f"Code `{'1' * 40}` (clean)",
        "| plan | string | basic, premium, standard |",
        "| tenure_months | long |  |",
        "| roc_auc | 0.8123 | 0.9000 | 0.8000 |",
        "| log_loss | 0.4000 | – | – |",
        "| plan=basic | 0.7900 | 0.7700 | yes |",
        "| region=north | 0.7000 | 0.7500 | **no** |",
        "4 gates, 1 failed (2 per slice, 1 failed).",
        "| roc_auc | yes | 0.8123 | 0.7000 | roc_auc reason |",
        "Not validated outside the values seen in training: plan: basic, premium, standard.",
        "Trained on labels from 2026-04-07T06:00:00+00:00 to 2026-06-30T06:00:00+00:00",
    ):
        assert shown in card, shown
    assert "cost_wall_seconds" not in card
    assert "slice.plan=basic |" not in card  # slices have their own table, not the gates'


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        (
            {"status": "challenger"},
            "**Pending approval**: passed its gates and waits for a person to approve or reject "
            "it (`mlops approve 3` / `mlops reject 3`).",
        ),
        (
            {"status": "superseded", "status_reason": "the champion moved"},
            "**superseded**: the champion moved",
        ),
        (
            {"status": "rejected", "status_reason": "1 of 4 gates failed: roc_auc"},
            "**Rejected**: 1 of 4 gates failed: roc_auc. It never serves.",
        ),
        (
            {"status": "rejected", "decided_by": "ana", "status_reason": "worse on north"},
            "**Rejected** by ana: worse on north. It never serves.",
        ),
        (
            {"status": "rolled_back", "status_reason": "skew check failed"},
            "**Rolled back**: skew check failed. It no longer serves.",
        ),
        (
            {"status": "champion", "promoted_at": "t", "promoted_by": "ana"},
            "**Champion**: serves predictions. Promoted at t by ana (no reason recorded); "
            "previous champion: none.",
        ),
        ({"status": "retired"}, "**Retired**: a later champion replaced it."),
        ({}, "**Unknown**: the version has no `status` tag."),
    ],
)
def test_approval_status_reads_the_status_tags(tags: dict[str, str], expected: str) -> None:
    assert approval_status("3", tags) == expected


def test_a_champion_names_its_promotion_and_predecessor() -> None:
    card = render(FACTS)
    assert (
        "**Status**: **Champion**: serves predictions. Promoted at 2026-07-01T03:00:00+00:00 by "
        "prefect-flow-run:abc (gates passed; policy auto); previous champion: v2." in card
    )


def test_governance_tags_are_listed_and_other_tags_are_not() -> None:
    tags = {
        **FACTS.version_tags,
        "decision_reason": "looks | fine " + "x" * 300,
        "decided_by": "ana",
    }
    card = render(dataclasses.replace(FACTS, version_tags=tags))
    section = card.split("## Approval and promotion")[1].split("## Known limits")[0]
    assert "| decided_by | ana |" in section
    assert "| promoted_by | prefect-flow-run:abc |" in section
    assert "looks / fine" in section  # a pipe would break the table
    assert "x" * 200 not in section
    assert "lineage.seed" not in section


def test_a_first_version_has_no_slices_and_a_bare_run_renders_with_what_it_has() -> None:
    bare = CardFacts(
        model_name="churn",
        version="1",
        run_id="run-1",
        version_tags={},
        metrics={},
        parameters={},
        gates=[],
        gates_passed=None,
        lineage={},
        features=[],
        values_seen={},
        intended_use="Not stated.",
        known_limits=[],
    )
    card = render(bare)
    assert "Not computed: slices are compared with a champion" in card
    assert "Gates\n\nNot recorded (the run has no gates.json)." in card
    assert "Features\n\nNot recorded (the model has no signature)." in card
    assert "Training set sha256 not recorded; label rows sha256 not recorded" in card
    assert "**Unknown**" in card


def test_a_long_card_shrinks_its_tables_keeping_failed_gates_first() -> None:
    slices = [gate(f"slice.region=r{i:03d}", i % 2 == 0, 0.8, 0.77) for i in range(300)]
    card = render(dataclasses.replace(FACTS, gates=[*FACTS.gates, *slices]))
    assert len(card) <= DESCRIPTION_LIMIT
    assert "more slice(s) in gates.json" in card
    kept = re.findall(r"^\| region=(r\d{3}) \|.*\| (yes|\*\*no\*\*) \|$", card, flags=re.MULTILINE)
    assert kept
    assert all(passed == "**no**" for _, passed in kept)
    assert card.endswith("- Trained on simulated data.\n")  # nothing cut off at the end
