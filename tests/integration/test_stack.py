"""`mlops stack up|status|down` as a user runs it: real servers on PostgreSQL, free ports."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.services import ProductionResources, require_services
from tests.support import CHECKOUT, add_mlflow_user, mlflow_login

# `mlops stack up/down` supervise servers only a subprocess can start and stop.
pytestmark = [pytest.mark.integration, pytest.mark.traced_subprocesses]
MLOPS = str(Path(sys.executable).with_name("mlops"))


def _environment(resources: ProductionResources) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "PREFECT_API"))}
    return keep | resources.environment()


def _mlops(resources: ProductionResources, *arguments: str, timeout: float = 400) -> Any:
    return subprocess.run(
        [MLOPS, *arguments],
        cwd=CHECKOUT,
        env=_environment(resources),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def resources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionResources]:
    """Private databases and ports; whatever runs is stopped and everything is dropped after."""
    found = ProductionResources.create(tmp_path_factory.mktemp("stack") / "workspace")
    require_services(found.settings())
    try:
        yield found
    finally:
        _mlops(found, "stack", "down")
        found.remove()


def _pids(resources: ProductionResources) -> dict[str, int]:
    folder = resources.home / "stack"
    return {
        name: int(json.loads((folder / f"{name}.json").read_text())["pid"])
        for name in ("mlflow", "prefect")
    }


def test_up_status_down(resources: ProductionResources) -> None:
    for weak, says in [
        ({"admin_password": "password1234"}, "well-known default"),
        ({"prefect_auth": "operator:short"}, "MLOPS_PREFECT__AUTH_STRING is too short"),
    ]:
        changed = ProductionResources(**{**resources.__dict__, **weak})
        refused = _mlops(changed, "stack", "up", timeout=120)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert says in " ".join(refused.stderr.split())

    started = _mlops(resources, "stack", "up")
    assert started.returncode == 0, started.stdout + started.stderr
    rows = {line.split()[0]: line.split()[1:3] for line in started.stdout.splitlines()}
    assert rows == {
        "postgres": ["postgresql://postgres@127.0.0.1:5432", "up"],
        "redis": ["redis://127.0.0.1:6379/0", "up"],
        "mlflow": [f"http://127.0.0.1:{resources.mlflow_port}", "up"],
        "prefect": [f"http://127.0.0.1:{resources.prefect_port}", "up"],
    }
    assert resources.admin_password not in started.stdout + started.stderr
    pids = _pids(resources)
    groups = {
        name: [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for name, pid in pids.items()
    }
    for process in (p for members in groups.values() for p in members):
        for connection in process.net_connections(kind="inet"):
            if connection.status == psutil.CONN_LISTEN:
                assert connection.laddr.ip == "127.0.0.1", (process.cmdline(), connection)

    _assert_the_prefect_api_needs_the_login_and_a_csrf_token(resources)
    _assert_only_the_governance_account_writes_what_it_created(resources)

    again = _mlops(resources, "stack", "up")
    assert again.returncode == 0
    assert "already running" in again.stderr
    assert _pids(resources) == pids

    status = _mlops(resources, "stack", "status")
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines()}
    assert rows["mlflow"] == [
        f"http://127.0.0.1:{resources.mlflow_port}",
        "up",
        "pid",
        str(pids["mlflow"]),
    ]
    assert rows["prefect"][1:] == ["up", "pid", str(pids["prefect"])]

    stopped = _mlops(resources, "stack", "down", timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped: mlflow, prefect" in stopped.stderr
    for members in groups.values():
        assert not [p for p in members if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    after = _mlops(resources, "stack", "status")
    assert after.returncode == 1
    rows = {line.split()[0]: line.split()[1:] for line in after.stdout.splitlines()}
    assert rows["mlflow"][1:] == ["down"]
    assert rows["prefect"][1:] == ["down"]


def _assert_the_prefect_api_needs_the_login_and_a_csrf_token(
    resources: ProductionResources,
) -> None:
    """Without the login nothing is read or created (401, or 403 without a CSRF token); with it
    but without a CSRF token nothing is created (403); a browser page of another origin gets no
    CORS grant. As the legitimate user (login and token, as the Prefect client sends them) it
    works."""
    api = f"http://127.0.0.1:{resources.prefect_port}/api"
    login = {"Authorization": "Basic " + base64.b64encode(resources.prefect_auth.encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"operator:guessed-password").decode()}
    run = {"flow_id": str(uuid.uuid4()), "name": "forged", "state": {"type": "SCHEDULED"}}

    def runs() -> int:
        response = httpx.post(f"{api}/flow_runs/count", json={}, headers=login | _csrf(api, login))
        assert response.status_code == 200, response.text
        return int(response.json())

    before = runs()
    assert httpx.get(f"{api}/health").status_code == 200  # the only open path
    for headers in ({}, wrong):
        assert httpx.get(f"{api}/admin/version", headers=headers).status_code == 401
        # Refused by the first check it meets: the CSRF token (403), then the login (401).
        created = httpx.post(f"{api}/flow_runs/", json=run, headers=headers | _csrf(api, login))
        assert created.status_code == 401, created.text
        assert httpx.post(f"{api}/flow_runs/", json=run, headers=headers).status_code == 403
    assert httpx.get(f"{api}/admin/version", headers=login).status_code == 200
    forged = httpx.post(f"{api}/flow_runs/", json=run, headers=login)
    assert forged.status_code == 403, forged.text
    assert "CSRF" in forged.text
    assert runs() == before
    preflight = httpx.options(
        f"{api}/flow_runs/",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.headers.get("access-control-allow-origin") != "http://evil.example"


def _assert_only_the_governance_account_writes_what_it_created(
    resources: ProductionResources,
) -> None:
    """The accounts `stack up` made: the governance account creates an experiment, a run and
    a registered model version and moves its alias; the scoring account and a person the admin
    added read them, and every write of theirs is refused (403), changing nothing."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = f"http://127.0.0.1:{resources.mlflow_port}"
    person = add_mlflow_user(uri, ("admin", resources.admin_password), "mallory")

    governance = MlflowClient(uri)
    with mlflow_login("mlops-governance", resources.governance_password):
        experiment = governance.create_experiment("probe-audit")
        run = governance.create_run(experiment, tags={"audit.action": "promoted"})
        governance.create_registered_model("probe")
        version = governance.create_model_version(
            "probe", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id
        ).version
        governance.set_registered_model_alias("probe", "champion", version)

    other = MlflowClient(uri)
    for username, password in [
        ("mlops-scoring", resources.scoring_password),
        ("mallory", person),
    ]:
        with mlflow_login(username, password):
            assert other.get_registered_model("probe").aliases == {"champion": version}
            assert other.get_run(run.info.run_id).data.tags["audit.action"] == "promoted"
            writes: list[tuple[Any, tuple[Any, ...]]] = [
                (other.set_registered_model_alias, ("probe", "champion", version)),
                (other.delete_registered_model_alias, ("probe", "champion")),
                (other.set_model_version_tag, ("probe", version, "mlops.model_sha256", "x")),
                (other.create_run, (experiment,)),
                (other.set_tag, (run.info.run_id, "audit.action", "rolled_back")),
            ]
            for write, arguments in writes:
                with pytest.raises(MlflowException, match=r"PERMISSION_DENIED|403"):
                    write(*arguments)
    with mlflow_login("mallory", person):
        assert other.get_registered_model("probe").aliases == {"champion": version}
        assert len(other.search_runs([experiment])) == 1


def _csrf(api: str, login: dict[str, str]) -> dict[str, str]:
    client = str(uuid.uuid4())
    response = httpx.get(f"{api}/csrf-token", params={"client": client}, headers=login)
    response.raise_for_status()
    return {"Prefect-Csrf-Token": response.json()["token"], "Prefect-Csrf-Client": client}
