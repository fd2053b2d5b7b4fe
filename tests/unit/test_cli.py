"""Unit tests of the `mlops` command in-process, and of how little importing it costs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from mlops_flows.cli.app import app
from mlops_flows.settings import Settings
from tests.support import CHECKOUT, unset

SIMULATE = ["simulate", "--customers", "50", "--days", "28", "--end", "2026-06-30"]
HEAVY_LIBRARIES = ["pandas", "feast", "mlflow", "prefect", "great_expectations", "sklearn"]


def flat(text: str) -> str:
    """Output without whitespace: rich wraps long paths at the console width."""
    return "".join(text.split())


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """MLOPS_HOME in a temporary folder; every variable the CLI may write is restored after."""
    home = tmp_path / "workspace"
    for name in [n for n in os.environ if n.startswith("MLOPS_")]:
        unset(monkeypatch, name)
    for name, value in Settings(home=home).library_environment().items():
        monkeypatch.setenv(name, value)
    unset(monkeypatch, "PREFECT_API_URL")
    # No probe of a local `mlops server`: these commands never reach the Prefect API.
    monkeypatch.setenv("MLOPS_PREFECT__API_URL", "http://127.0.0.1:9/api")
    return home


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_help_lists_the_commands(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for command in ("simulate", "features", "train", "demo", "server"):
        assert command in result.output


def test_reproduce_help_names_its_exit_codes(runner: CliRunner) -> None:
    result = runner.invoke(app, ["reproduce", "--help"])
    assert result.exit_code == 0, result.output
    assert "exit0exact,4namingwhatchanged,1nosuchversion" in flat(result.output)


def test_simulate_writes_the_sources_and_prints_their_paths(runner: CliRunner, home: Path) -> None:
    result = runner.invoke(app, SIMULATE)

    assert result.exit_code == 0, result.output
    data = home.resolve() / "data"
    for name in ("customer_profile", "customer_activity", "labels"):
        path = data / f"{name}.parquet"
        assert path.is_file()
        assert str(path) in flat(result.output)
    labels = pd.read_parquet(data / "labels.parquet")
    assert len(labels) == 50 * 3  # labels on days 7, 14 and 21
    assert labels["event_timestamp"].max() <= pd.Timestamp("2026-06-30 23:59", tz="UTC")
    assert "150 label rows" in result.output


def test_an_unknown_scenario_is_a_usage_error(runner: CliRunner, home: Path) -> None:
    result = runner.invoke(app, [*SIMULATE, "--scenario", "nonsense"])

    assert result.exit_code == 2
    assert "nonsense" in result.output
    assert not (home / "data").exists()


def test_an_invalid_setting_exits_1_with_a_clear_message(
    runner: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_GATES__MIN_ROC_AUC", "abc")

    result = runner.invoke(app, SIMULATE)

    assert result.exit_code == 1
    assert flat("invalid setting (an MLOPS_* variable or the use-case") in flat(result.output)
    assert "gates.min_roc_auc" in result.output
    assert not home.exists()


def test_an_invalid_setting_message_shows_the_rejected_value(
    runner: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_GATES__MIN_ROC_AUC", "abc")
    result = runner.invoke(app, SIMULATE)
    assert "input_value='abc'" in result.output


def test_an_invalid_setting_message_never_shows_a_password(
    runner: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_POSTGRES__PASWORD", "do-not-show-me")  # a typo: rejected
    monkeypatch.setenv("MLOPS_POSTGRES__PORT", "port")
    result = runner.invoke(app, SIMULATE)
    assert result.exit_code == 1
    assert "postgres.port" in result.output
    assert "do-not-show-me" not in result.output


def test_a_setting_that_is_not_json_exits_1_with_a_clear_message(
    runner: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_GATES__SLICE_COLUMNS", "plan,region")
    result = runner.invoke(app, SIMULATE)
    assert result.exit_code == 1
    assert flat("invalid setting (an MLOPS_* variable or the use-case") in flat(result.output)


def test_a_model_without_its_use_case_file_exits_1_naming_the_ones_there(
    runner: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unset(monkeypatch, "MLOPS_MODEL")  # the option sets it: removed again after the test
    result = runner.invoke(app, ["--model", "fraud", *SIMULATE])
    assert result.exit_code == 1
    assert flat("no use case 'fraud': ") in flat(result.output)
    assert flat("usecases holds churn.") in flat(result.output)
    assert not home.exists()


@pytest.mark.parametrize("command", [["train"], ["history"], ["serve"]])
def test_a_model_command_in_a_project_without_use_cases_exits_1_naming_what_to_set(
    runner: CliRunner,
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    command: list[str],
) -> None:
    monkeypatch.setenv("MLOPS_PROJECT_DIR", str(tmp_path / "project"))
    result = runner.invoke(app, command)
    assert result.exit_code == 1
    told = flat(result.output)
    assert flat("no use case in") in told
    assert flat("nothing sets features.feature_service, features.entity_key") in told
    assert not home.exists()


def test_a_home_below_a_regular_file_exits_1_saying_not_writable(
    runner: CliRunner, home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "file.txt").write_text("not a folder")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "file.txt" / "workspace"))

    result = runner.invoke(app, SIMULATE)

    assert result.exit_code == 1
    assert "notwritable" in flat(result.output)
    assert "MLOPS_HOME" in result.output


def test_importing_the_cli_imports_no_heavy_library() -> None:
    # What keeps `mlops --help` under a second: the libraries load inside the commands.
    script = (
        "import json, sys\n"
        "import mlops_flows.cli.app\n"
        f"print(json.dumps([m for m in {HEAVY_LIBRARIES!r} if m in sys.modules]))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(completed.stdout) == []


# The message MLflow 3 raised when its server answered 503 while PostgreSQL restarted.
GAVE_UP = (
    "API request to http://127.0.0.1:47937/api/2.0/mlflow/runs/search failed with exception "
    "HTTPConnectionPool(host='127.0.0.1', port=47937): Max retries exceeded with url: "
    "/api/2.0/mlflow/runs/search (Caused by ResponseError('too many 503 error responses'))"
)


def test_an_mlflow_server_that_kept_answering_503_is_one_clear_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import typer
    from mlflow.exceptions import MlflowException

    from mlops_flows.cli.common import EXIT_FAILED, run_step

    def fails() -> None:
        raise MlflowException(GAVE_UP)

    with pytest.raises(typer.Exit) as exited:
        run_step("training flow", fails)
    assert exited.value.exit_code == EXIT_FAILED
    said = " ".join(capsys.readouterr().err.split())
    assert "error in training flow: the MLflow server answered 503" in said
    assert "backend store is unavailable or restarting" in said


def test_other_unexpected_errors_keep_their_traceback() -> None:
    from mlops_flows.cli.common import run_step

    def fails() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_step("training flow", fails)


def test_a_rejected_first_version_says_there_is_no_champion() -> None:
    import typer

    from mlops_flows.cli import runs as cli
    from mlops_flows.cli.common import console
    from mlops_flows.steps.training import TrainingOutcome, TrainingStatus

    outcome = TrainingOutcome(
        TrainingStatus.REJECTED, "1", "run", None, gate_summary="1 of 4 gates failed"
    )
    settings = Settings()
    with console.capture() as captured, pytest.raises(typer.Exit):
        cli.report_outcome(settings, outcome)
    assert "the champion is unchanged (none)" in captured.get()
    assert "vnone" not in captured.get()
