"""The closed loop on a real production stack, `prefect deploy --all`, a worker and real events.

Under the production profile's manual policy: baseline trained -> the approval run suspends ->
`mlops approve` -> champion served -> concept drift -> monitoring emits `mlops.drift.detected` ->
the trigger starts exactly one retraining run -> approval -> `mlops.model.promoted` -> the
redeploy run reloads the service -> the service serves the new version; a redeploy while the
service is down rolls back.

On the production profile only: it is the one with every part a team deploys (MLflow with basic
auth and Prefect on PostgreSQL, Feast SQL registry, Redis). The same flows on embedded defaults
run through a worker in tests/faults/test_worker_killed.py, and in one process in
tests/integration/test_demo_loop.py.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops_flows.examples.churn.simulate import Scenario, SimulationSpec, simulate
from mlops_flows.ops.workspace import Workspace
from mlops_flows.serving.contract import HEALTH, RELOAD, TOKEN_FILE
from tests.e2e.stack import BIN, Stack, base_environment, files_in_home, wait_until
from tests.services import ProductionResources, require_services
from tests.support import add_mlflow_user, chained_tags, mlflow_login

# The whole loop, stack start included, on a shared two-core machine: more than the default.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

DAYS, DRIFT_DAY = 112, 56  # eight weeks of the new regime: enough for a 42-day retrain
TODAY = datetime.now(UTC).date()
DRIFT_START = datetime.combine(
    TODAY - timedelta(days=DAYS - 1 - DRIFT_DAY), datetime.min.time(), UTC
)
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`mlops stack up` (MLflow with basic auth and Prefect on PostgreSQL), Feast SQL registry
    and Redis, on private databases, Feast project and ports; deployments and a worker; a
    workspace with concept drift in the last month."""
    folder = tmp_path_factory.mktemp("e2e")
    workspace = folder / "workspace"
    resources = ProductionResources.create(workspace)
    require_services(resources.settings())
    spec = SimulationSpec(
        customers=1500,
        days=DAYS,
        end=TODAY,
        scenario=Scenario.CONCEPT_DRIFT,
        drift_start_day=DRIFT_DAY,
    )
    simulate(spec).write(Workspace(workspace).ensure().data)
    environment = base_environment(folder, workspace) | resources.environment()
    environment["PREFECT_API_URL"] = f"http://127.0.0.1:{resources.prefect_port}/api"
    environment["PREFECT_API_AUTH_STRING"] = resources.prefect_auth  # worker, deploy, API calls
    environment["MLOPS_PROMOTION_POLICY"] = "manual"  # the production default: a person decides
    stack = Stack(folder, environment)
    try:
        stack.run(str(BIN / "mlops"), "stack", "up")
        stack.deploy_and_start_worker()
        yield stack
    finally:
        stack.stop()
        stack.run(str(BIN / "mlops"), "stack", "down")
        resources.remove()
    assert files_in_home(environment) == []


def _deployment_id(stack: Stack, flow: str, name: str) -> str:
    return str(stack.api("GET", f"/deployments/name/{flow}/{name}")["id"])


def _run_deployment(
    stack: Stack, flow: str, name: str, parameters: dict[str, Any]
) -> dict[str, Any]:
    """Create a run of a deployment (what the UI's 'Quick run' does) and wait for its end."""
    deployment = _deployment_id(stack, flow, name)
    body = {"parameters": parameters}
    run = stack.api("POST", f"/deployments/{deployment}/create_flow_run", json=body)
    return _wait_for_run(stack, str(run["id"]))


def _wait_for_run(stack: Stack, run_id: str, timeout: float = 400) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        stack.check_alive("worker")
        run = stack.api("GET", f"/flow_runs/{run_id}")
        return run if run["state"]["type"] in FINAL else None

    return dict(wait_until(finished, timeout, f"flow run {run_id}", poll=1))


def _runs_of(stack: Stack, flow: str, name: str) -> list[dict[str, Any]]:
    deployment = _deployment_id(stack, flow, name)
    body = {"deployments": {"id": {"any_": [deployment]}}, "sort": "START_TIME_ASC"}
    return list(stack.api("POST", "/flow_runs/filter", json=body))


def _emit(stack: Stack, name: str, payload: dict[str, Any], model: str = "churn") -> None:
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": {"prefect.resource.id": f"mlops.model.{model}"},
        "payload": payload,
    }
    stack.api("POST", "/events", json=[event])


def _served_version(url: str) -> str | None:
    try:
        return str(httpx.get(f"{url}{HEALTH}", timeout=2).json()["model_version"])
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def _approve_on_request(stack: Stack, started: datetime, forged_first: bool = False) -> str:
    """The approval run the request started suspends (its process exits); `mlops approve`,
    signed with the approver's key, resumes it and it promotes. With `forged_first`, a
    decision sent straight to the API in the approver's name comes first: the run refuses it
    and suspends again. The version approved."""
    (requested, *_) = wait_until(
        lambda: stack.events("mlops.model.approval_requested", started), 60, "approval request"
    )
    version = str(requested["payload"]["version"])

    def suspended() -> dict[str, Any] | None:
        runs = _runs_of(stack, "approve-churn-model", "on-request")
        mine = [r for r in runs if r["parameters"]["version"] == version]
        return mine[0] if mine and mine[0]["state"]["name"] == "Suspended" else None

    waiting = wait_until(suspended, 120, f"the approval run of v{version} to suspend")
    if forged_first:
        forged = {"decision": "approve", "approver": "e2e", "reason": "no review"}
        stack.api("POST", f"/flow_runs/{waiting['id']}/resume", json={"run_input": forged})
        wait_until(suspended, 120, f"the approval run of v{version} to suspend again")
    stack.run(str(BIN / "mlops"), "approve", version, "--reason", "e2e review", "--approver", "e2e")
    finished = _wait_for_run(stack, waiting["id"])
    assert finished["state"]["type"] == "COMPLETED", stack.log("worker")
    history = stack.run(
        str(BIN / "mlops"), "history", "--version", version, extra={"COLUMNS": "250"}
    )
    actions = ["approval_requested", "approved", "promoted", "e2e (key SHA256:"]
    if forged_first:
        actions += ["decision_refused", "is not signed"]
    for action in actions:
        assert action in history, history
    return version


def test_the_closed_loop(stack: Stack) -> None:
    figures: dict[str, float] = {}
    started = datetime.now(UTC)
    # A cron deployment, run on demand: the baseline, trained before the drift.
    baseline = _run_deployment(
        stack,
        "train-churn-model",
        "weekly",
        {
            "parameters": {
                "as_of": (DRIFT_START - timedelta(minutes=1)).isoformat(),
                "reason": "e2e-baseline",
            }
        },
    )
    assert baseline["state"]["type"] == "COMPLETED", stack.log("worker")
    assert _approve_on_request(stack, started, forged_first=True) == "1"
    (promoted, *_) = wait_until(
        lambda: stack.events("mlops.model.promoted", started), 60, "the promotion event"
    )
    assert promoted["payload"]["version"] == "1"
    materialized = _run_deployment(stack, "materialize-features", "hourly", {})
    assert materialized["state"]["type"] == "COMPLETED", stack.log("worker")

    stack.start("service", [str(BIN / "mlops"), "serve"])
    service = f"http://127.0.0.1:{stack.environment['MLOPS_SERVING__PORT']}"
    assert wait_until(lambda: _served_version(service), 120, "the scoring service") == "1"

    # Monitoring sees the concept drift (performance decay on the labelled recent week).
    started = datetime.now(UTC)
    monitored = _run_deployment(stack, "monitor-churn-drift", "daily", {})
    assert monitored["state"]["type"] == "COMPLETED", stack.log("worker")
    (drift, *_) = wait_until(
        lambda: stack.events("mlops.drift.detected", started), 60, "drift event"
    )
    assert drift["payload"]["model_name"] == "churn"
    # A storm of further drift events must not start more retraining.
    for _ in range(5):
        _emit(stack, "mlops.drift.detected", drift["payload"])

    retrains = wait_until(
        lambda: _runs_of(stack, "retrain-on-drift", "on-drift"), 120, "a retrain run"
    )
    retrain = _wait_for_run(stack, retrains[0]["id"])
    assert retrain["state"]["type"] == "COMPLETED", stack.log("worker")
    assert retrain["parameters"]["window_end"] == drift["payload"]["window_end"]
    figures["event_to_retrain_start_s"] = (
        datetime.fromisoformat(retrain["start_time"]) - datetime.fromisoformat(drift["occurred"])
    ).total_seconds()

    # Approval -> promotion -> redeploy -> the service answers with the new version.
    assert _approve_on_request(stack, started) == "2"
    (promoted, *_) = wait_until(
        lambda: stack.events("mlops.model.promoted", started), 60, "promotion"
    )
    assert promoted["payload"]["version"] == "2"
    assert wait_until(lambda: _served_version(service) == "2", 400, "the service to serve v2")

    # v1's promotion triggered a redeploy too, before the service ran; v2's is the one to check.
    # (The service's alias watcher may load v2 before that run even starts.)
    def redeploys_of_v2() -> list[dict[str, Any]]:
        runs = _runs_of(stack, "redeploy-churn-model", "on-promotion")
        return [r for r in runs if r["parameters"]["parameters"]["version"] == "2"]

    (redeploy,) = wait_until(redeploys_of_v2, 60, "the redeploy run of v2")
    assert _wait_for_run(stack, redeploy["id"])["state"]["type"] == "COMPLETED"
    time.sleep(5)  # the debounce window is an hour: give any extra trigger time to show itself
    assert len(_runs_of(stack, "retrain-on-drift", "on-drift")) == 1  # six events, one run

    # A redeploy that cannot reach the service rolls back to v1 and says so; the service,
    # started again, serves v1.
    stack.stop("service")
    rollback_started = datetime.now(UTC)
    failed = _run_deployment(
        stack,
        "redeploy-churn-model",
        "on-promotion",
        {"parameters": {"version": "2", "previous_version": "1"}},
    )
    assert failed["state"]["type"] == "FAILED"
    assert "champion moved back from v2 to v1" in failed["state"]["message"]
    (rolled_back, *_) = wait_until(
        lambda: stack.events("mlops.model.rolled_back", rollback_started), 60, "rollback event"
    )
    assert rolled_back["payload"]["restored_version"] == "1"
    assert "not reachable" in rolled_back["payload"]["reason"]
    stack.start("service", [str(BIN / "mlops"), "serve"])
    assert wait_until(lambda: _served_version(service), 120, "the service again") == "1"

    # An event about another model, without a window, still starts a run: it fails at once
    # and names the field (a failing template would have created no run and said nothing).
    _emit(stack, "mlops.drift.detected", {"model_name": "fraud"}, model="fraud")

    def run_for_fraud() -> list[dict[str, Any]]:
        runs = _runs_of(stack, "retrain-on-drift", "on-drift")
        return [r for r in runs if r["parameters"]["model_name"] == "fraud"]

    (bad,) = wait_until(run_for_fraud, 60, "the run for the bad event")
    bad = _wait_for_run(stack, bad["id"])
    assert bad["state"]["type"] == "FAILED"
    assert "field 'window_end'" in bad["state"]["message"]
    # `mlops history --verify` checks every entry's hash, chain and signature: in it, the
    # forged entry is the one problem among them all.
    _an_edit_user_cannot_make_an_alias_move_governed(stack, service)
    print(f"figures: {figures}")
    Path(stack.folder / "figures.txt").write_text(str(figures))


def _an_edit_user_cannot_make_an_alias_move_governed(stack: Stack, service: str) -> None:
    """The EDIT attack of issue 15 on the real servers: a person the admin granted EDIT on the
    registered model and on the audit experiment moves `champion` to the rolled-back v2 and
    writes the `promoted` entry that would make the move look governed. The service keeps
    serving v1 and says why, refuses a reload (409), and `mlops history --verify` names the
    forged entry. The admin then puts the alias back and deletes the forgery."""
    from mlflow import MlflowClient

    from mlops_flows.registry.history import Action, Entry

    uri = f"http://127.0.0.1:{stack.environment['MLOPS_MLFLOW__SERVER_PORT']}"
    admin = ("admin", stack.environment["MLOPS_MLFLOW__ADMIN_PASSWORD"])
    person = add_mlflow_user(uri, admin, "mallory")
    client = MlflowClient(uri)
    with mlflow_login(*admin):
        audit = client.get_experiment_by_name("churn-audit").experiment_id
    for resource_type, resource_id in [("registered_model", "churn"), ("experiment", audit)]:
        grant = {"username": "mallory", "resource_type": resource_type}
        grant |= {"resource_id": resource_id, "permission": "EDIT"}
        url = f"{uri}/api/3.0/mlflow/users/permissions/grant"
        httpx.post(url, json=grant, auth=admin).raise_for_status()

    with mlflow_login("mallory", person):
        client.set_registered_model_alias("churn", "champion", "2")
        promoted = Entry(Action.PROMOTED, "2", "e2e (key SHA256:forged)", "approved", "1", "2")
        run = client.create_run(audit, tags=chained_tags(client, "churn", promoted))

    def alerted() -> dict[str, Any] | None:
        health = httpx.get(f"{service}{HEALTH}", timeout=5).json()
        return health if health.get("alert") else None

    try:
        health = wait_until(alerted, 60, "the service to report the moved alias")
        assert health["model_version"] == "1"
        assert "points at v2" in health["alert"]
        token = (Path(stack.environment["MLOPS_HOME"]) / "serving" / TOKEN_FILE).read_text()
        reload = httpx.post(
            f"{service}{RELOAD}", headers={"Authorization": f"Bearer {token.strip()}"}
        )
        assert reload.status_code == 409, reload.text
        verified = subprocess.run(
            [str(BIN / "mlops"), "history", "--verify"],
            env=stack.environment | {"COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        told = " ".join((verified.stdout + verified.stderr).split())  # summary on stderr
        assert verified.returncode == 4, verified.stdout + verified.stderr
        assert f"(run {run.info.run_id}): not signed by the governance key" in told
        assert told.count("TAMPERED") == 1, told
        assert "1 problems in" in told, told
    finally:
        with mlflow_login(*admin):
            client.set_registered_model_alias("churn", "champion", "1")
            client.delete_run(run.info.run_id)
    assert wait_until(lambda: not alerted(), 60, "the alert to clear")
    assert _served_version(service) == "1"


def _deployed(stack: Stack) -> dict[str, Any]:
    """What deploying writes: each deployment's definition and the automations of its
    triggers (without the ids and times a write gives them)."""
    volatile = {"id", "created", "updated", "last_polled", "status", "deployment_id"}

    def kept(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: kept(v) for k, v in value.items() if k not in volatile}
        if isinstance(value, list):
            return [kept(v) for v in value]
        return value

    deployments = stack.api("POST", "/deployments/filter", json={})
    automations = stack.api("POST", "/automations/filter", json={})
    return {
        # Names repeat across flows (`daily`): a flow and its deployment name are the key.
        "deployments": sorted(
            (kept(d) for d in deployments), key=lambda d: (d["flow_id"], d["name"])
        ),
        "deployment_ids": sorted(d["id"] for d in deployments),
        "automations": sorted((kept(a) for a in automations), key=lambda a: a["name"]),
    }


def test_deploying_twice_leaves_the_deployments_of_one_deploy(stack: Stack) -> None:
    """The twice-run check of `prefect deploy --all` (tests/integration/test_idempotency.py
    has the other commands'; `mlops stack up` twice is in tests/integration/test_stack.py)."""
    once = _deployed(stack)
    assert len(once["automations"]) >= 3  # drift, promotion, approval triggers
    stack.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
    assert _deployed(stack) == once


@pytest.mark.parametrize(
    ("deployment", "body", "status", "refusal"),
    [
        # A shell command on the worker, whose environment holds the stack's credentials.
        (
            ("train-churn-model", "weekly"),
            {"job_variables": {"command": "touch /tmp/mlops-owned"}},
            422,
            "command",
        ),
        # Another policy, or another tracking server, for one run.
        (
            ("train-churn-model", "weekly"),
            {"job_variables": {"env": {"MLOPS_PROMOTION_POLICY": "auto"}}},
            422,
            "env",
        ),
        # The reload token sent to another address: the URL is a setting, not a parameter.
        # (Prefect answers a parameter that fails the deployment's schema with 409.)
        (
            ("redeploy-churn-model", "on-promotion"),
            {"parameters": {"parameters": {"version": "2", "service_url": "http://evil"}}},
            409,
            "service_url",
        ),
        # A fault-injection switch that would roll a good version back: there is none.
        (
            ("redeploy-churn-model", "on-promotion"),
            {"parameters": {"parameters": {"version": "2", "force_smoke_failure": True}}},
            409,
            "force_smoke_failure",
        ),
    ],
)
def test_a_run_cannot_bring_its_own_command_environment_or_parameters(
    stack: Stack, deployment: tuple[str, str], body: dict[str, Any], status: int, refusal: str
) -> None:
    """What the work pool's template (work-pool.json) and the flows' parameter schemas refuse,
    at the API, before any run exists."""
    deployment_id = _deployment_id(stack, *deployment)
    before = _runs_of(stack, *deployment)
    with pytest.raises(httpx.HTTPStatusError) as raised:
        stack.api("POST", f"/deployments/{deployment_id}/create_flow_run", json=body)
    assert raised.value.response.status_code == status, raised.value.response.text
    assert refusal in raised.value.response.text
    assert _runs_of(stack, *deployment) == before
