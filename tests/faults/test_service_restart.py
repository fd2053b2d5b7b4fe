"""PostgreSQL and Redis restarted in the middle of a flow on the production profile: the flow
recovers through retries or fails with a clear error, and the registry and online store are
left whole.

The restarts hit a private PostgreSQL cluster and Redis started for this module on free ports
(tests/private_services.py), never the machine's own, which other tests use at the same time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from mlops_flows.examples.churn.simulate import SimulationSpec, simulate
from mlops_flows.ops.workspace import Workspace
from tests.e2e.stack import BIN, Stack, base_environment, wait_until
from tests.private_services import PrivateServices, private_services
from tests.services import ProductionResources, require_services
from tests.support import SMALL, WIDE_TERMINAL, mlflow_login

pytestmark = pytest.mark.faults
MODEL = "churn"
TODAY = datetime.now(UTC).date()


@pytest.fixture(scope="module")
def services() -> Iterator[PrivateServices]:
    with private_services() as started:
        yield started


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, services: PrivateServices) -> Iterator[Stack]:
    """`mlops stack up` on the private PostgreSQL and Redis; the Feast repository applied. No
    champion is trained first: each test's run settles whether or not an earlier one promoted
    (`_assert_settled`), and a training of its own would only lengthen the set-up."""
    folder = tmp_path_factory.mktemp("restart")
    workspace = folder / "workspace"
    resources = ProductionResources.create(
        workspace, postgres_port=services.postgres_port, redis_port=services.redis_port
    )
    require_services(resources.settings())
    simulate(SimulationSpec(**{**vars(SMALL), "end": TODAY})).write(
        Workspace(workspace).ensure().data
    )
    environment = base_environment(folder, workspace) | resources.environment()
    environment["PREFECT_API_URL"] = f"http://127.0.0.1:{resources.prefect_port}/api"
    environment["PREFECT_API_AUTH_STRING"] = resources.prefect_auth  # worker, deploy, API calls
    environment["COLUMNS"] = str(WIDE_TERMINAL)  # the CLI's error line unwrapped in the logs
    stack = Stack(folder, environment)
    try:
        stack.run(str(BIN / "mlops"), "stack", "up")
        stack.run(str(BIN / "mlops"), "features", "apply")
        yield stack
    finally:
        stack.stop()
        services.ensure_up()
        stack.run(str(BIN / "mlops"), "stack", "down")


@dataclass(frozen=True)
class Registry:
    champion: str | None
    versions: dict[str, dict[str, str]]  # version: its tags


def _registry(stack: Stack) -> Registry:
    """What the stack's MLflow server holds, read as its admin."""
    from mlflow import MlflowClient

    client = MlflowClient(f"http://127.0.0.1:{stack.environment['MLOPS_MLFLOW__SERVER_PORT']}")
    with mlflow_login("admin", stack.environment["MLOPS_MLFLOW__ADMIN_PASSWORD"]):
        versions = client.search_model_versions(f"name='{MODEL}'")
        # No registered model before the first run registers a version.
        champion = client.get_registered_model(MODEL).aliases.get("champion") if versions else None
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
    ended; or exit 1 ending on the CLI's one-line error and the champion as it was. No
    traceback either way; never a version without its gate outcome."""
    after = _registry(stack)
    champion, versions = after.champion, after.versions
    log = (stack.folder / f"{name}.log").read_text(errors="replace")
    last = log.strip().splitlines()[-1]
    assert code in {0, 1, 3}, log
    new = sorted(set(versions) - set(before.versions), key=int)
    assert "Traceback" not in log, log
    if code == 1:
        assert last.startswith("error in training flow:"), log
        assert champion == before.champion
    else:
        assert len(new) == 1, (new, log)
        assert champion == (new[0] if code == 0 else before.champion)
    for version, tags in versions.items():
        assert tags.get("status"), (version, tags)


def test_postgres_restarted_while_training(stack: Stack, services: PrivateServices) -> None:
    before = _registry(stack)
    _train(stack, "train-pg-training", seed=11)
    wait_until(
        lambda: "training rows" in stack.log("train-pg-training"), 300, "the training set", 0.2
    )
    services.restart_postgres()
    code = _await_exit(stack, "train-pg-training", time.monotonic())
    _assert_settled(stack, "train-pg-training", code, before)


def test_postgres_restarted_while_a_run_waits_for_the_registry_lock(
    stack: Stack, services: PrivateServices
) -> None:
    before = _registry(stack)
    started = datetime.now(UTC)
    with stack.holding_registry_lock(MODEL):
        _train(stack, "train-pg-lock", seed=12)

        # The run's last step before it asks for the lock.
        wait_until(lambda: stack.events("mlops.model.registered", started), 300, "its event", 0.5)
        time.sleep(2)  # now it polls the Prefect server for the lock
        services.restart_postgres()
        fault = time.monotonic()
        time.sleep(5)  # the run keeps asking the Prefect server, restarted, for the lock
    code = _await_exit(stack, "train-pg-lock", fault)
    _assert_settled(stack, "train-pg-lock", code, before)


ONLINE_VIEWS = {b"_ts:customer_profile", b"_ts:customer_activity"}


def _online_views(stack: Stack, services: PrivateServices) -> list[set[bytes]]:
    """For each entity key of the stack's Feast project in Redis, the views it holds values of."""
    import redis

    client = redis.Redis(host="127.0.0.1", port=services.redis_port)
    try:
        project = stack.environment["MLOPS_FEATURES__PROJECT"]
        keys = list(client.scan_iter(match=f"*{project}", count=1000))
        return [{f for f in client.hkeys(key) if f.startswith(b"_ts:")} for key in keys]
    finally:
        client.close()


def test_redis_restarted_while_materializing(stack: Stack, services: PrivateServices) -> None:
    """Redis restarted once the first view is written: it keeps nothing on disk, so those
    values are gone. The run's read-back sees the loss and reloads, or the run fails clearly
    and the next one does."""
    name = "materialize"
    stack.start(name, [str(BIN / "mlops"), "features", "materialize"])
    wait_until(
        lambda: _online_views(stack, services), 300, "the first view's values in Redis", 0.05
    )
    services.restart_redis()
    code = _await_exit(stack, name, time.monotonic())
    log = stack.log(name)
    assert code in {0, 1}, log
    assert "Traceback" not in log, log
    if code == 1:
        assert log.strip().splitlines()[-1].startswith("error in materialize"), log
        stack.run(str(BIN / "mlops"), "features", "materialize")
    online = _online_views(stack, services)
    assert len(online) == SMALL.customers
    assert all(views == ONLINE_VIEWS for views in online)
