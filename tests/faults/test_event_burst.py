"""A burst of 100 `mlops.drift.detected` events for one model starts exactly one retraining run.

A real `prefect server` subprocess with the project's deployments applied (`prefect deploy
--all`); no worker is needed to count the runs the trigger creates. The trigger of
`retrain-on-drift/on-drift` debounces per model (`for_each` resource, threshold 1, within 1 h).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from mlops_flows.adapters import events
from tests.e2e.stack import BIN, Stack, base_environment, wait_until
from tests.support import CHECKOUT

pytestmark = pytest.mark.faults

BURST = 100


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Prefect server with the work pool and every deployment of prefect.yaml."""
    folder = tmp_path_factory.mktemp("burst")
    stack = Stack(folder, base_environment(folder, folder / "workspace"))
    try:
        started = time.monotonic()
        stack.start_prefect_server()
        wait_until(stack.healthy, 180, "the Prefect server")
        print(f"\nprefect server healthy after {time.monotonic() - started:.1f} s")
        stack.create_work_pool()
        stack.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
        yield stack
    finally:
        stack.stop()


def test_deploying_without_the_project_directory_is_refused_and_stores_nothing(
    stack: Stack,
) -> None:
    """Prefect would store an unset `{{ $MLOPS_PROJECT_DIR }}` as the folder of every run."""
    before = stack.api("POST", "/deployments/filter", json={})
    environment = dict(stack.environment)
    del environment["MLOPS_PROJECT_DIR"]
    refused = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", "deploy", "--all"],
        cwd=CHECKOUT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert refused.returncode != 0
    assert "MLOPS_PROJECT_DIR is not set" in refused.stdout + refused.stderr
    assert stack.api("POST", "/deployments/filter", json={}) == before  # not one field changed


def _drift_event(model: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        "id": str(uuid.uuid4()),
        "occurred": now.isoformat(),
        "event": events.DRIFT_DETECTED,
        "resource": events.model_resource(model),
        "payload": {
            "model_name": model,
            "model_version": "1",
            "window_end": now.isoformat(),
            "drift_share": 0.5,
            "reason": "test burst",
        },
    }


def _stored(stack: Stack) -> int:
    """How many drift events of the model `churn` the server has stored."""
    body = {
        "filter": {
            "event": {"name": [events.DRIFT_DETECTED]},
            "resource": {"id": ["mlops.model.churn"]},
        },
        "limit": 1,
    }
    return int(stack.api("POST", "/events/filter", json=body)["total"])


def _retrain_runs(stack: Stack) -> list[dict[str, Any]]:
    deployment = stack.api("GET", "/deployments/name/retrain-on-drift/on-drift")["id"]
    body = {"deployments": {"id": {"any_": [deployment]}}, "sort": "EXPECTED_START_TIME_ASC"}
    return list(stack.api("POST", "/flow_runs/filter", json=body))


def _runs_for(stack: Stack, model: str) -> list[dict[str, Any]]:
    return [run for run in _retrain_runs(stack) if run["parameters"]["model_name"] == model]


def test_a_burst_of_drift_events_starts_exactly_one_retraining(stack: Stack) -> None:
    # The trigger is live once an event of another model starts its run.
    stack.api("POST", "/events", json=[_drift_event("warm-up")])
    wait_until(lambda: _runs_for(stack, "warm-up"), 60, "the trigger to start a run", 0.2)

    started = time.monotonic()
    burst = [_drift_event("churn") for _ in range(BURST)]
    with ThreadPoolExecutor(max_workers=8) as pool:  # many emitters at once
        list(pool.map(lambda event: stack.api("POST", "/events", json=[event]), burst))
    # The trigger evaluates events in order: once a later event of a third model has started
    # its run, it has seen every event of the burst. Its actions run two at a time, though, and
    # one that meets a busy database retries, so the burst's run may come after the sentinel's.
    stack.api("POST", "/events", json=[_drift_event("sentinel")])
    wait_until(lambda: _runs_for(stack, "sentinel"), 60, "the sentinel's run", 0.2)
    wait_until(lambda: _runs_for(stack, "churn"), 60, "the burst's run", 0.2)
    settled = time.monotonic() - started

    # The event store is written by another consumer, in batches: wait until it holds them all.
    wait_until(lambda: _stored(stack) == BURST, 60, f"{BURST} stored events", 0.2)
    runs = _runs_for(stack, "churn")
    print(f"\n{BURST} events -> {len(runs)} run(s); settled after {settled:.1f} s")
    assert len(runs) == 1, [run["parameters"] for run in runs]
    assert runs[0]["parameters"]["event_id"] in {event["id"] for event in burst}
    assert {r["parameters"]["model_name"] for r in _retrain_runs(stack)} == {
        "warm-up",
        "churn",
        "sentinel",
    }
