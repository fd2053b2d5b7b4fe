"""A flow-run process killed with SIGKILL on a real worker: the run is marked crashed, and its
retry completes without a second version or a second move of `champion`.

The kills land at deterministic points: in training (as soon as the run's MLflow run exists),
and in registration (the test holds the registry lock, so the run waits right after it
registered its version, before promotion).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from mlops_flows.examples.churn.simulate import simulate
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import history
from mlops_flows.settings import Settings
from tests.e2e.stack import Stack, base_environment, files_in_home, wait_until
from tests.support import END_OF_DATA, SMALL

pytestmark = pytest.mark.faults
MODEL = "churn"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Server, pool, deployments and a worker polling every second; the small example data."""
    folder = tmp_path_factory.mktemp("killed")
    workspace = folder / "workspace"
    simulate(SMALL).write(Workspace(workspace).ensure().data)
    environment = base_environment(folder, workspace)
    stack = Stack(folder, environment)
    try:
        stack.start_prefect_server()
        # The training deployment alone: a promotion here triggers no redeploy, which would
        # find no service, move `champion` back and keep the worker busy past the test.
        stack.deploy_and_start_worker("train-churn-model/weekly")
        yield stack
    finally:
        stack.stop()
    # The local profile keeps all its state in the workspace too.
    assert files_in_home(environment) == []


def _client(stack: Stack) -> Any:
    from mlflow import MlflowClient

    home = Path(stack.environment["MLOPS_HOME"])
    return MlflowClient(Settings(home=home).tracking_uri)


def _start_training(stack: Stack, as_of: str) -> str:
    deployment = stack.api("GET", "/deployments/name/train-churn-model/weekly")["id"]
    body = {"parameters": {"parameters": {"as_of": as_of, "reason": "kill-test"}}}
    return str(stack.api("POST", f"/deployments/{deployment}/create_flow_run", json=body)["id"])


def _state(stack: Stack, run_id: str) -> str:
    return str(stack.api("GET", f"/flow_runs/{run_id}")["state"]["type"])


def _kill_flow_run_processes(stack: Stack) -> datetime:
    """SIGKILL every process the worker started for the run (its only one), as an
    out-of-memory kill or a lost host would; the worker itself lives on. The time of the kill."""
    worker = psutil.Process(stack.processes["worker"].pid)
    children = worker.children(recursive=True)
    assert children, "the worker runs no flow run"
    killed = datetime.now(UTC)
    for process in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGKILL)
    return killed


def _retry_once_crashed(stack: Stack, run_id: str, killed: datetime) -> None:
    """Wait until the worker marks the killed run crashed, then retry it as the UI does."""

    # The worker reports the crash again when it has seen its infrastructure exit, then says so
    # in an event; a retry before that would be crashed by the late report.
    def worker_done() -> bool:
        found = stack.events("prefect.worker.executed-flow-run", since=killed)
        related = {item["prefect.resource.id"] for event in found for item in event["related"]}
        return f"prefect.flow-run.{run_id}" in related

    wait_until(worker_done, 120, "the worker to finish with the killed run")
    assert _state(stack, run_id) == "CRASHED"
    stack.api(
        "POST",
        f"/flow_runs/{run_id}/set_state",
        json={"state": {"type": "SCHEDULED", "name": "AwaitingRetry"}, "force": True},
    )


def _await_end(stack: Stack, run_id: str) -> dict[str, Any]:
    def ended() -> str | None:
        state = _state(stack, run_id)
        return state if state in {"COMPLETED", "FAILED", "CRASHED"} else None

    wait_until(ended, 400, "the retried run", poll=1)
    return dict(stack.api("GET", f"/flow_runs/{run_id}"))


def _versions_of(stack: Stack, run_id: str) -> list[str]:
    query = f"name='{MODEL}' and tag.`mlops.flow_run_id`='{run_id}'"
    return [str(found.version) for found in _client(stack).search_model_versions(query)]


def _training_runs_of(stack: Stack, run_id: str) -> list[Any]:
    experiment = _client(stack).get_experiment_by_name("churn")
    if experiment is None:
        return []
    query = f"tags.`mlops.prefect_flow_run_id` = '{run_id}'"
    return list(_client(stack).search_runs([experiment.experiment_id], filter_string=query))


def _champion(stack: Stack) -> str | None:
    from mlops_flows.registry import versions as registry

    return registry.champion_version(_client(stack), MODEL)


def test_killed_in_training_then_in_registration_the_retries_register_once_promote_once(
    stack: Stack,
) -> None:
    """One run killed twice, retried as the UI does after each kill: first in training (as
    soon as its MLflow run exists), then in registration (its retry registered a version and
    waits for the registry lock the test holds). Its retries register one version and move
    `champion` once. One run for both kills: a run killed in training trains again on retry,
    and that second training is the one killed in registration."""
    before = _champion(stack)
    with stack.holding_registry_lock(MODEL):
        run_id = _start_training(stack, END_OF_DATA.isoformat())
        wait_until(lambda: _training_runs_of(stack, run_id), 300, "the run's MLflow run", 0.2)
        _retry_once_crashed(stack, run_id, _kill_flow_run_processes(stack))

        (version,) = wait_until(
            lambda: _versions_of(stack, run_id), 300, "the run's version", poll=0.2
        )
        wait_until(
            lambda: "status" in _client(stack).get_model_version(MODEL, version).tags,
            60,
            "the gate outcome",
            poll=0.2,
        )
        killed = _kill_flow_run_processes(stack)
    assert _champion(stack) == before

    _retry_once_crashed(stack, run_id, killed)
    retried = _await_end(stack, run_id)

    assert retried["state"]["type"] == "COMPLETED", stack.log("worker")
    assert _versions_of(stack, run_id) == [version]
    assert _champion(stack) == version
    entries = history.read(_client(stack), MODEL, version)
    assert [entry.action for entry in entries] == ["registered", "promoted"]
    assert entries[-1].from_version == before
