"""Every bad input ends with one clear message and leaves registry and stores as they were."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from mlops_flows.adapters import events
from mlops_flows.examples.churn.simulate import Corruption, SimulationSpec, simulate
from mlops_flows.ops.workspace import Workspace
from mlops_flows.settings import Settings
from tests.support import (
    CHECKOUT,
    SMALL,
    assert_one_line_failure,
    run_mlops,
    snapshot,
    wait_for_event,
)

# Each bad input goes through `mlops train` in process and must end the command on the CLI's
# one line, with no traceback. One subprocess shows the same of a real process's terminal,
# Prefect's own logging included, and that the Prefect server keeps the traceback.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("prefect_server"),
    pytest.mark.traced_subprocesses,
]


@pytest.fixture
def unchanged(champion_workspace: Settings) -> Iterator[Settings]:
    """Assert after the test that aliases, versions, Feast registry and online store are intact."""
    before = snapshot(champion_workspace)
    yield champion_workspace
    assert snapshot(champion_workspace) == before


def _train_fails(expected: str, step: str = "training flow") -> str:
    """`mlops train` ends on its one error line from `step`, matching `expected`, with no
    traceback; that line."""
    result = run_mlops("train", "--reason", "test-bad-input")
    return assert_one_line_failure(result, rf"^error in {step}: .*{expected}")


def test_missing_feature_repository(unchanged: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_FEATURES__REPO_PATH", "/nowhere/features")
    _train_fails(r"No Feast repository at /nowhere/features")


def test_unknown_feature_service(unchanged: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_FEATURES__FEATURE_SERVICE", "churn_model_v9")
    _train_fails(r"'churn_model_v9'.*known: churn_model_v1")


def _labels_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, labels: pd.DataFrame) -> None:
    path = tmp_path / "labels.parquet"
    labels.to_parquet(path, index=False)
    monkeypatch.setenv("MLOPS_FEATURES__LABELS_PATH", str(path))


def test_empty_label_set(
    unchanged: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    empty = simulate(SimulationSpec(customers=5, days=28)).labels.iloc[:0]
    _labels_file(monkeypatch, tmp_path, empty)
    _train_fails(r"has no rows")


def test_labels_without_features(
    unchanged: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stamp = pd.Timestamp("2026-06-29 06:00", tz="UTC")
    strangers = pd.DataFrame(
        {
            "customer_id": [99_000_001, 99_000_002],
            "event_timestamp": [stamp, stamp],
            "churned": [0, 1],
        }
    )
    _labels_file(monkeypatch, tmp_path, strangers)
    _train_fails(r"2 of 2 label rows have no 'customer_\w+' features")


def _known_customers(stamp: str) -> pd.DataFrame:
    """Label rows of two customers the sources know, at one time."""
    at = pd.Timestamp(stamp, tz="UTC")
    ids = simulate(SMALL).labels["customer_id"].unique()[:2]
    return pd.DataFrame({"customer_id": ids, "event_timestamp": [at, at], "churned": [0, 1]})


def test_labels_after_the_sources_end_name_the_stale_source(
    unchanged: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _labels_file(monkeypatch, tmp_path, _known_customers("2026-12-01 06:00"))
    _train_fails(r"newest row of its source .*days before.*stale")


def test_labels_dated_in_the_future_are_named(
    unchanged: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _labels_file(monkeypatch, tmp_path, _known_customers("2099-01-01 06:00"))
    _train_fails(r"2 of them are dated in the future")


def test_text_ids_for_an_integer_entity_are_named(
    unchanged: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    labels = _known_customers("2026-06-29 06:00").astype({"customer_id": str})
    _labels_file(monkeypatch, tmp_path, labels)
    _train_fails(r"'customer_id' are object.*declares INT64")


def test_missing_label_column(
    unchanged: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    labels = simulate(SimulationSpec(customers=5, days=28)).labels.drop(columns="churned")
    _labels_file(monkeypatch, tmp_path, labels)
    _train_fails(r"lacks column\(s\) churned")


@pytest.fixture
def corrupted_sources(unchanged: Settings) -> Iterator[Workspace]:
    """Let a test write broken sources; put the clean ones back afterwards."""
    workspace = Workspace(unchanged.home_resolved)
    yield workspace
    simulate(SMALL).write(workspace.data)


@pytest.mark.parametrize(
    ("corruption", "failed_expectation"),
    [
        (Corruption.NULLS, "expect_column_values_to_not_be_null"),
        (Corruption.OUT_OF_RANGE, "expect_column_min_to_be_between"),
        (Corruption.DUPLICATED_KEYS, "expect_compound_columns_to_be_unique"),
    ],
)
def test_broken_data_fails_validation_reports_and_emits_data_invalid(
    corrupted_sources: Workspace, corruption: Corruption, failed_expectation: str
) -> None:
    started = datetime.now(UTC)
    simulate(SimulationSpec(**{**vars(SMALL), "corruptions": (corruption,)})).write(
        corrupted_sources.data
    )
    result = run_mlops("train", "--reason", "test-bad-input")
    # The summary's lines (one per failed expectation, the advice) come first; the command
    # ends on the one line that names the problem.
    assert_one_line_failure(result, r"^error in training flow: Data validation failed: ")
    details = result.output[: result.output.rindex("error in training flow")]
    assert failed_expectation in details
    assert "update the suite 'training_set' in review instead." in details
    reports = [
        report
        for report in corrupted_sources.reports.glob("training_set-validation-*.json")
        if report.stat().st_mtime >= started.timestamp()
    ]
    assert reports
    assert not any(json.loads(report.read_text())["success"] for report in reports)
    (event, *_) = wait_for_event(events.DATA_INVALID, since=started)
    assert event.resource.id == "mlops.model.churn"
    assert any(failed_expectation in failure for failure in event.payload["failed"])


def test_renamed_source_column_is_named_before_retrieval(corrupted_sources: Workspace) -> None:
    spec = SimulationSpec(**{**vars(SMALL), "corruptions": (Corruption.RENAMED_COLUMN,)})
    simulate(spec).write(corrupted_sources.data)
    _train_fails(r"customer_activity.parquet.*lacks.*sessions_7d")


def test_an_empty_source_is_named(corrupted_sources: Workspace) -> None:
    path = corrupted_sources.data / "customer_activity.parquet"
    pd.read_parquet(path).iloc[:0].to_parquet(path, index=False)
    _train_fails(r"customer_activity.parquet has no rows")


def test_unwritable_workspace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLOPS_HOME", str(blocker / "workspace"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    _train_fails(r"is not writable.*MLOPS_HOME", step="prepare workspace")


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_tracking_server_fails_fast(
    unchanged: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_MLFLOW__TRACKING_URI", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    started = time.monotonic()
    _train_fails(r"is not reachable")
    assert time.monotonic() - started < 15


def test_an_expected_failure_ends_the_command_on_one_line_without_a_traceback(
    tmp_path: Path,
) -> None:
    """`mlops train` on a workspace whose Feast registry is empty: the terminal shows Prefect's
    one-line failure records and ends on the CLI's own line, with no traceback; the run's log
    on the Prefect server keeps the traceback."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterName,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.settings import PREFECT_API_URL

    environment = os.environ | {
        "MLOPS_HOME": str(tmp_path / "workspace"),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "COLUMNS": "250",
    }
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("mlops")), "train"],
        cwd=CHECKOUT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    told = completed.stdout + completed.stderr
    assert completed.returncode == 1, told
    assert "Traceback" not in told
    assert (
        told.strip()
        .splitlines()[-1]
        .startswith(
            "error in training flow: Feature service 'churn_model_v1' is not in the Feast registry"
        )
    ), told

    (name,) = set(re.findall(r"Flow run '([\w-]+)' - ", told))  # its failure, one line
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
        )
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])))
    assert any("Traceback" in log.message for log in logs)
