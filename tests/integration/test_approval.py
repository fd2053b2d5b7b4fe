"""Approval under the manual policy: a real approval run pauses on the real Prefect API and is
resumed with approve, with reject, or not at all; only an approval moves `champion`."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from typer.testing import CliRunner

from mlops_flows import vocabulary
from mlops_flows.cli import common as cli_common
from mlops_flows.cli.app import app
from mlops_flows.flows.approval_flow import ApprovalOutcome, approve_churn_model
from mlops_flows.flows.training_flow import TrainingOutcome, TrainingParameters, train_churn_model
from mlops_flows.registry import governance, history
from mlops_flows.registry import versions as registry
from mlops_flows.settings import Settings
from mlops_flows.vocabulary import Tag
from tests.support import (
    END_OF_DATA,
    champion_of,
    make_key,
    mlflow_client,
    seed_workspace,
    use_workspace,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]


@pytest.fixture(scope="module")
def approval_home(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """A workspace whose v1 became champion under the auto policy."""
    home = tmp_path_factory.mktemp("approval") / "workspace"
    with pytest.MonkeyPatch.context() as patch:
        seed_workspace(use_workspace(patch, home))
        first = train_churn_model(
            TrainingParameters(as_of=END_OF_DATA - timedelta(days=7), reason="test-first")
        )
    assert first.status == "champion"
    return home


@pytest.fixture
def manual(monkeypatch: pytest.MonkeyPatch, approval_home: Path) -> Settings:
    """The module's workspace under the manual policy, checking for a decision every second."""
    monkeypatch.setenv("MLOPS_PROMOTION_POLICY", "manual")
    monkeypatch.setenv("MLOPS_GOVERNANCE__APPROVAL_POLL_SECONDS", "1")
    return use_workspace(monkeypatch, approval_home)


_SEEDS = itertools.count(1)


def _challenger(settings: Settings) -> TrainingOutcome:
    """Train under the manual policy: the version passes its gates and waits. Each one from
    another seed: the same request again trains nothing."""
    champion = champion_of(settings)
    outcome = train_churn_model(TrainingParameters(reason="test-manual", seed=next(_SEEDS)))
    assert outcome.status == "challenger", outcome.gate_summary
    assert champion_of(settings) == champion
    return outcome


class ApprovalRuns:
    """Approval flows started in threads, each awaited until it is paused."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.results: dict[str, Any] = {}
        self.threads: list[threading.Thread] = []

    def start(self, version: str) -> tuple[str, threading.Thread]:
        def run() -> None:
            self.results[version] = approve_churn_model(version)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)
        return _paused_run(self.settings, version), thread


@pytest.fixture
def approval_runs(manual: Settings) -> Iterator[ApprovalRuns]:
    runs = ApprovalRuns(manual)
    yield runs
    for thread in runs.threads:
        thread.join(timeout=60)


def _paused_run(settings: Settings, version: str, timeout: float = 90) -> str:
    from prefect import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tags = governance.version_tags(mlflow_client(settings), settings.mlflow.model_name, version)
        run_id = tags.get(Tag.APPROVAL_FLOW_RUN)
        if run_id:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(UUID(run_id)).state
            if state is not None and state.is_paused():
                return run_id
        time.sleep(0.5)
    raise AssertionError(f"no paused approval run for v{version} after {timeout} s")


def _actions(settings: Settings, version: str) -> list[str]:
    entries = history.read(mlflow_client(settings), settings.mlflow.model_name, version)
    return [entry.action for entry in entries]


def test_the_form_has_no_default_decision() -> None:
    from mlops_flows.flows.approval_flow import ApprovalForm

    schema = ApprovalForm.model_json_schema()
    assert {"decision", "approver", "reason"} <= set(schema["required"])
    assert "default" not in schema["properties"]["decision"]


def test_approve_from_the_cli_resumes_the_paused_run_and_promotes(
    manual: Settings, approval_runs: ApprovalRuns
) -> None:
    outcome = _challenger(manual)
    before = champion_of(manual)
    run_id, thread = approval_runs.start(outcome.version)

    result = CliRunner().invoke(
        app, ["approve", outcome.version, "--reason", "holdout reviewed", "--approver", "alice"]
    )
    thread.join(timeout=60)

    assert result.exit_code == 0, result.output
    assert run_id in result.output
    approved: ApprovalOutcome = approval_runs.results[outcome.version]
    assert approved.decision == "approved"
    assert champion_of(manual) == outcome.version
    tags = governance.version_tags(mlflow_client(manual), manual.mlflow.model_name, outcome.version)
    assert (tags["approval"], tags["decided_by"], tags["status"]) == (
        "approved",
        "alice",
        "champion",
    )
    assert tags["previous_champion"] == before
    # The version list stays readable: the approval path writes the most tags of all.
    listed = mlflow_client(manual).get_model_version(manual.mlflow.model_name, outcome.version)
    assert len(listed.tags) <= vocabulary.MAX_TAGS, sorted(listed.tags)
    assert _actions(manual, outcome.version) == [
        "registered",
        "approval_requested",
        "approved",
        "promoted",
    ]
    promoted = history.read(mlflow_client(manual), manual.mlflow.model_name, outcome.version)[-1]
    assert (promoted.from_version, promoted.to_version, promoted.actor) == (
        before,
        outcome.version,
        "alice",
    )


def test_reject_through_the_api_leaves_the_champion(
    manual: Settings, approval_runs: ApprovalRuns
) -> None:
    from prefect.flow_runs import resume_flow_run

    outcome = _challenger(manual)
    before = champion_of(manual)
    run_id, thread = approval_runs.start(outcome.version)

    resume_flow_run(
        UUID(run_id),
        run_input={"decision": "reject", "approver": "bob", "reason": "slice too small"},
    )
    thread.join(timeout=60)

    assert approval_runs.results[outcome.version].decision == "rejected"
    assert champion_of(manual) == before
    assert (
        registry.aliases(mlflow_client(manual), manual.mlflow.model_name).get("challenger")
        != outcome.version
    )
    tags = governance.version_tags(mlflow_client(manual), manual.mlflow.model_name, outcome.version)
    assert (tags["approval"], tags["status"], tags["decided_by"]) == ("rejected", "rejected", "bob")
    assert _actions(manual, outcome.version)[-1] == "approval_rejected"


def test_no_decision_before_the_deadline_counts_as_rejected(
    manual: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_GOVERNANCE__APPROVAL_TIMEOUT_SECONDS", "4")
    outcome = _challenger(manual)
    before = champion_of(manual)

    with pytest.raises(governance.ApprovalExpiredError, match="recorded as timed out"):
        approve_churn_model(outcome.version)  # pauses; nobody answers

    assert champion_of(manual) == before
    tags = governance.version_tags(mlflow_client(manual), manual.mlflow.model_name, outcome.version)
    assert (tags["approval"], tags["status"]) == ("timed_out", "rejected")
    assert _actions(manual, outcome.version)[-1] == "approval_timed_out"
    late = CliRunner().invoke(app, ["approve", outcome.version, "--reason", "too late"])
    assert late.exit_code == 1
    assert "not awaiting approval (approval: timed_out" in " ".join(late.output.split())


def test_cli_decides_directly_when_no_run_waits(
    manual: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = _challenger(manual)
    before = champion_of(manual)

    result = CliRunner().invoke(
        app, ["reject", outcome.version, "--reason", "not this week", "--approver", "carol"]
    )

    assert result.exit_code == 0, result.output
    assert champion_of(manual) == before
    assert _actions(manual, outcome.version)[-1] == "approval_rejected"
    # One line per entry. (COLUMNS would not do: the console took its width when first
    # imported, by whichever test ran first.)
    monkeypatch.setattr(cli_common.output, "width", 250)
    shown = CliRunner().invoke(app, ["history", "--version", outcome.version])
    assert shown.exit_code == 0, shown.output
    for action in ("registered", "approval_requested", "approval_rejected", "carol"):
        assert action in shown.output


def _wait_for_refusals(settings: Settings, version: str, count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _actions(settings, version).count("decision_refused") < count:
        assert time.monotonic() < deadline, f"no {count} refused decisions on v{version}"
        time.sleep(0.5)


def test_with_an_approvers_file_only_a_signed_decision_counts(
    manual: Settings,
    approval_runs: ApprovalRuns,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The attack of issue 15: anyone who can resume the run names an approver. With an
    approvers file the flow checks the approver's signature of this decision."""
    alice = make_key(tmp_path / "alice")
    make_key(tmp_path / "mallory")
    (tmp_path / "approvers").write_text(f"# who may decide\nalice {alice}\n")
    monkeypatch.setenv("MLOPS_GOVERNANCE__APPROVERS_FILE", str(tmp_path / "approvers"))
    outcome = _challenger(manual)
    before = champion_of(manual)
    run_id, thread = approval_runs.start(outcome.version)

    # Straight to the API, naming alice: refused, recorded, and the run waits again.
    from prefect.flow_runs import resume_flow_run

    form = {"decision": "approve", "approver": "alice", "reason": "trust me"}
    resume_flow_run(UUID(run_id), run_input=form)
    _wait_for_refusals(manual, outcome.version, 1)
    assert champion_of(manual) == before

    # Signed, but with another key than alice's: refused too, and the CLI says why.
    def approve(reason: str, key: str) -> Any:
        arguments = ["approve", outcome.version, "--reason", reason, "--approver", "alice"]
        return CliRunner().invoke(app, [*arguments, "--key", str(tmp_path / key)])

    forged = approve("trust me", "mallory")
    assert forged.exit_code == 1, forged.output
    assert "does not verify with 'alice''s key" in " ".join(forged.output.split())
    assert champion_of(manual) == before

    signed = approve("holdout reviewed", "alice")
    thread.join(timeout=60)

    assert signed.exit_code == 0, signed.output
    assert champion_of(manual) == outcome.version
    tags = governance.version_tags(mlflow_client(manual), manual.mlflow.model_name, outcome.version)
    assert tags["decided_by"].startswith("alice (key SHA256:")
    entries = history.read(mlflow_client(manual), manual.mlflow.model_name, outcome.version)
    assert [e.action for e in entries] == [
        "registered",
        "approval_requested",
        "decision_refused",
        "decision_refused",
        "approved",
        "promoted",
    ]
    assert "is not signed" in entries[2].reason
    assert entries[2].evidence["claimed_approver"] == "alice"
    assert entries[-1].actor == tags["decided_by"]
