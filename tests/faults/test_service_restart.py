"""PostgreSQL and Redis restarted in the middle of a flow on the production profile: the flow
recovers through retries or fails with a clear error, and the registry and online store are
left whole.

These tests restart the machine's own PostgreSQL cluster and Redis, so they run only under
`CI=true` (where `.ci/run` owns the services), never on a developer's machine by accident, and
only where those run on this host (not in service containers).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest

from flows.simulate import SimulationSpec, simulate
from flows.workspace import Workspace
from tests.e2e.stack import BIN, Stack, base_environment, wait_until
from tests.services import ProductionResources, require_services
from tests.support import SMALL


def _local_cluster() -> str | None:
    """The version of this host's PostgreSQL cluster `main` online on 5432, when Redis runs on
    this host too; None otherwise."""
    if shutil.which("pg_lsclusters") is None or shutil.which("redis-server") is None:
        return None
    listing = subprocess.run(
        ["pg_lsclusters", "--no-header"], capture_output=True, text=True, check=False
    ).stdout
    for line in listing.splitlines():
        version, cluster, port, status, *_ = line.split()
        if (cluster, port, status) == ("main", "5432", "online"):
            return version
    return None


CLUSTER = _local_cluster()
pytestmark = [
    pytest.mark.faults,
    pytest.mark.skipif(
        os.environ.get("CI", "").lower() != "true",
        reason="restarts the machine's PostgreSQL and Redis: runs under CI=true only",
    ),
    pytest.mark.skipif(
        CLUSTER is None, reason="PostgreSQL and Redis are not this host's own processes"
    ),
]
MODEL = "churn"
TODAY = datetime.now(UTC).date()
LAST_LABEL = datetime.combine(TODAY, datetime.max.time(), UTC).replace(microsecond=0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`mlops stack up` on private databases, Feast project and ports; the Feast repository
    applied and a first champion trained a week back."""
    folder = tmp_path_factory.mktemp("restart")
    workspace = folder / "workspace"
    resources = ProductionResources.create(workspace)
    require_services(resources.settings())
    simulate(SimulationSpec(**{**vars(SMALL), "end": TODAY})).write(
        Workspace(workspace).ensure().data
    )
    environment = base_environment(folder, workspace) | resources.environment()
    environment["PREFECT_API_URL"] = f"http://127.0.0.1:{resources.prefect_port}/api"
    stack = Stack(folder, environment)
    try:
        stack.run(str(BIN / "mlops"), "stack", "up")
        stack.run(str(BIN / "mlops"), "features", "apply")
        stack.run(
            str(BIN / "mlops"), "train", "--as-of", (LAST_LABEL - timedelta(days=7)).isoformat()
        )
        yield stack
    finally:
        stack.stop()
        _ensure_services_up()
        stack.run(str(BIN / "mlops"), "stack", "down")
        resources.remove()


def _restart_postgres() -> None:
    """`pg_ctlcluster restart` (fast shutdown: every connection is cut)."""
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", str(CLUSTER), "main", "restart"],
        check=True,
        capture_output=True,
    )


def _restart_redis() -> None:
    """Shut the machine's Redis down (it keeps nothing on disk) and start it again as it ran."""
    answer = _redis_cli("config", "get", "dir").split()  # ["dir", folder] while it runs
    folder = answer[-1] if len(answer) == 2 else "/var/lib/redis"
    _redis_cli("shutdown", "nosave")
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--dir",
            folder,
        ],
        check=True,
        capture_output=True,
    )
    wait_until(_redis_answers, 30, "Redis to answer", poll=0.1)


def _redis_cli(*command: str) -> str:
    return subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", *command], capture_output=True, text=True, check=False
    ).stdout


def _redis_answers() -> bool:
    return _redis_cli("ping").strip() == "PONG"


def _ensure_services_up() -> None:
    """Whatever a test did, leave PostgreSQL and Redis running for the rest of the suite."""
    if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"], check=False).returncode != 0:
        _restart_postgres()
    if not _redis_answers():
        _restart_redis()


@dataclass(frozen=True)
class Registry:
    champion: str | None
    versions: dict[str, dict[str, str]]  # version: its tags


def _registry(stack: Stack) -> Registry:
    """What the stack's MLflow server holds, read as its admin."""
    from mlflow import MlflowClient

    login = {
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": stack.environment["MLOPS_MLFLOW__ADMIN_PASSWORD"],
    }
    client = MlflowClient(f"http://127.0.0.1:{stack.environment['MLOPS_MLFLOW__SERVER_PORT']}")
    with mock.patch.dict(os.environ, login):
        versions = client.search_model_versions(f"name='{MODEL}'")
        champion = client.get_registered_model(MODEL).aliases.get("champion")
    return Registry(
        str(champion) if champion else None, {str(v.version): dict(v.tags) for v in versions}
    )


def _train(stack: Stack, name: str, seed: int) -> None:
    """`mlops train` on the latest window; its own seed, so that it is no duplicate request."""
    stack.start(name, [str(BIN / "mlops"), "train", "--seed", str(seed), "--reason", name])


def _await_exit(stack: Stack, name: str, since: float) -> int:
    """The process's exit code, once it ended; prints the time from the fault to the end."""
    process = stack.processes[name]
    process.wait(timeout=300)
    print(f"\n{name}: exit {process.returncode} {time.monotonic() - since:.1f} s after the fault")
    return int(process.returncode)


def _assert_settled(stack: Stack, name: str, code: int, before: Registry) -> None:
    """Exit 0 (promoted) or 3 (refused by a gate) with one new version that says how it
    ended; or exit 1 ending on the CLI's one-line error (Prefect logs the failed task's
    traceback above it) and the champion as it was. Never a version without its gate outcome."""
    after = _registry(stack)
    champion, versions = after.champion, after.versions
    log = (stack.folder / f"{name}.log").read_text(errors="replace")
    last = " ".join(log.strip().splitlines()[-6:])
    assert code in {0, 1, 3}, log
    new = sorted(set(versions) - set(before.versions), key=int)
    if code == 1:
        assert "error in training flow:" in last, log
        assert "Traceback" not in last, log
        assert champion == before.champion
    else:
        assert "Traceback" not in log, log
        assert len(new) == 1, (new, log)
        assert champion == (new[0] if code == 0 else before.champion)
    for version, tags in versions.items():
        assert tags.get("status"), (version, tags)


def test_postgres_restarted_while_training(stack: Stack) -> None:
    before = _registry(stack)
    _train(stack, "train-pg-training", seed=11)
    wait_until(
        lambda: "training rows" in stack.log("train-pg-training"), 300, "the training set", 0.2
    )
    _restart_postgres()
    code = _await_exit(stack, "train-pg-training", time.monotonic())
    _assert_settled(stack, "train-pg-training", code, before)


def test_postgres_restarted_while_a_run_waits_for_the_registry_lock(stack: Stack) -> None:
    before = _registry(stack)
    started = datetime.now(UTC)
    with stack.holding_registry_lock(MODEL):
        _train(stack, "train-pg-lock", seed=12)

        # The run's last step before it asks for the lock.
        wait_until(lambda: stack.events("mlops.model.registered", started), 300, "its event", 0.5)
        time.sleep(2)  # now it polls the Prefect server for the lock
        _restart_postgres()
        fault = time.monotonic()
        time.sleep(5)  # the run keeps asking the Prefect server, restarted, for the lock
    code = _await_exit(stack, "train-pg-lock", fault)
    _assert_settled(stack, "train-pg-lock", code, before)


ONLINE_VIEWS = {b"_ts:customer_profile", b"_ts:customer_activity"}


def _online_views(stack: Stack) -> list[set[bytes]]:
    """For each entity key of the stack's Feast project in Redis, the views it holds values of."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        project = stack.environment["MLOPS_FEATURES__PROJECT"]
        keys = list(client.scan_iter(match=f"*{project}", count=1000))
        return [{f for f in client.hkeys(key) if f.startswith(b"_ts:")} for key in keys]
    finally:
        client.close()


def test_redis_restarted_while_materializing(stack: Stack) -> None:
    """Redis restarted once the first view is written: it keeps nothing on disk, so those
    values are gone. The run's read-back sees the loss and reloads, or the run fails clearly
    and the next one does."""
    name = "materialize"
    stack.start(name, [str(BIN / "mlops"), "features", "materialize"])
    wait_until(lambda: _online_views(stack), 300, "the first view's values in Redis", 0.05)
    _restart_redis()
    code = _await_exit(stack, name, time.monotonic())
    log = stack.log(name)
    assert code in {0, 1}, log
    assert "Traceback" not in log, log
    if code == 1:
        assert "error in materialize" in log, log
        stack.run(str(BIN / "mlops"), "features", "materialize")
    online = _online_views(stack)
    assert len(online) == SMALL.customers
    assert all(views == ONLINE_VIEWS for views in online)
