"""Event to retraining flow running: `mlops.drift.detected` posted to a real `prefect server`
with the deployments applied and a process worker polling every second.

    .venv/bin/python -m benchmarks.run --only event [--full]

Each sample names another model as its resource (the trigger fires once per model per hour) and
in its payload, so the run starts, then stops at the payload check instead of retraining. The
next sample is emitted once that run has ended (the deployment cancels a second concurrent run).
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.results import Result
from benchmarks.servers import BIN, Stack, wait_until
from mlops_flows.adapters import events

CHECKOUT = Path(__file__).resolve().parents[1]  # the project benchmarked

FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _api(api_url: str, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(method, f"{api_url}{path}", timeout=30, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def _runs(api_url: str, deployment: str) -> list[dict[str, Any]]:
    body = {"deployments": {"id": {"any_": [deployment]}}}
    return list(_api(api_url, "POST", "/flow_runs/filter", json=body))


def _sample(api_url: str, deployment: str, index: int) -> tuple[float, float]:
    """Seconds from emit to the run created and to the run's Running state."""
    known = {run["id"] for run in _runs(api_url, deployment)}
    model = f"bench-{index}-{uuid.uuid4().hex[:8]}"
    emitted = datetime.now(UTC)
    event = {
        "id": str(uuid.uuid4()),
        "occurred": emitted.isoformat(),
        "event": events.DRIFT_DETECTED,
        "resource": events.model_resource(model),
        "payload": {
            "model_name": model,
            "model_version": "1",
            "reason": "benchmark",
            "window_end": emitted.isoformat(),
            "drift_share": 0.5,
        },
    }
    _api(api_url, "POST", "/events", json=[event])

    def started() -> dict[str, Any] | None:
        new = [run for run in _runs(api_url, deployment) if run["id"] not in known]
        return new[0] if new and new[0]["start_time"] else None

    run = wait_until(started, 120, f"the retrain run of sample {index}", poll=0.1)
    wait_until(
        lambda: _api(api_url, "GET", f"/flow_runs/{run['id']}")["state"]["type"] in FINAL,
        120,
        f"the end of the retrain run of sample {index}",
        poll=0.5,
    )
    created = datetime.fromisoformat(run["created"]) - emitted
    running_at = datetime.fromisoformat(run["start_time"]) - emitted
    return created.total_seconds(), running_at.total_seconds()


def measure_events(stack: Stack, samples: int) -> list[Result]:
    """p50/p95 of emit -> Running on the run's Prefect server, with deployments and a worker."""
    stack.create_work_pool()
    stack.run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
    stack.start("worker", [str(BIN / "prefect"), "worker", "start", "--pool", "mlops-process"])
    api = stack.api_url
    deployment = str(_api(api, "GET", "/deployments/name/retrain-on-drift/on-drift")["id"])
    measured = [_sample(api, deployment, index) for index in range(samples)]
    importing = _import_seconds(stack.environment)
    created = [m[0] for m in measured]
    latencies = [m[1] for m in measured]
    p50, p95 = np.percentile(latencies, [50, 95])
    note = (
        f"run created after {np.median(created):.2f} s (median); the worker polls every 1 s, "
        "then starts a process that imports the flow's module before the run is Running: "
        f"importing mlops_flows.flows.retrain_flow alone in a fresh process took {importing:.1f} s"
    )
    return [
        Result(
            stage="event to retraining",
            name="mlops.drift.detected -> flow run Running, p50",
            size=f"{samples} events",
            measured=float(p50),
            note=note,
            samples={"emit -> Running": latencies, "emit -> created": created},
        ),
        Result(
            stage="event to retraining",
            name="mlops.drift.detected -> flow run Running, p95",
            size=f"{samples} events",
            measured=float(p95),
        ),
    ]


def _import_seconds(environment: dict[str, str]) -> float:
    """Seconds a fresh process takes to import the retraining flow's module."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import mlops_flows.flows.retrain_flow"],
        env=environment,
        check=True,
        capture_output=True,
        cwd=CHECKOUT,
        timeout=300,
    )
    return time.perf_counter() - started
