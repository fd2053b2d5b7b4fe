"""Online scoring over HTTP: `mlops serve` (Feast online features + champion) against MLflow's
own scoring server given the same features inline, both on 127.0.0.1 in subprocesses.

    .venv/bin/python -m benchmarks.run --only serving [--full]

Sequential requests from one client after a warm-up, the same entity ids for both servers.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.results import Result
from benchmarks.servers import BIN, answers, free_port, library_environment, running, wait_until
from benchmarks.workload import KEY, LABEL, TIMESTAMP, Workspace, Workspaces

WARM_UP = 10


def _request_ids(workspace: Workspace, batch: int, count: int, seed: int) -> list[list[int]]:
    customers = workspace.data.labels[KEY].unique()
    rng = np.random.default_rng(seed)
    return [[int(i) for i in rng.choice(customers, batch, replace=False)] for _ in range(count)]


def _inline_bodies(workspace: Workspace, requests: list[list[int]]) -> list[dict[str, Any]]:
    """MLflow's `dataframe_split` bodies with the online features of each request's ids."""
    columns = [c for c in workspace.baseline_frame().columns if c not in (KEY, TIMESTAMP, LABEL)]
    everyone = sorted({i for ids in requests for i in ids})
    online = workspace.store.get_online_features(
        features=workspace.service, entity_rows=[{KEY: i} for i in everyone]
    ).to_df()
    online = online.set_index(KEY)[columns]
    return [
        {"dataframe_split": json.loads(online.loc[ids].to_json(orient="split", index=False))}
        for ids in requests
    ]


def _latencies(client: httpx.Client, path: str, bodies: list[Any]) -> list[float]:
    timings = []
    for body in bodies:
        started = time.perf_counter()
        client.post(path, json=body).raise_for_status()
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def measure_serving(workspaces: Workspaces, size: str, folder: Path, requests: int) -> list[Result]:
    """p99 of the project's service against MLflow's scoring server, 1 and 100 entities."""
    from mlops_flows.adapters import online_store

    workspace = workspaces.get(size)
    settings = workspace.activate()
    if not workspace.trained:  # the training stage did not run: a champion is needed
        from benchmarks.training_flow import run_flow

        run_flow(workspace)
    online_store.materialize(
        workspace.store, datetime.combine(workspace.spec.end, clock(), UTC) + timedelta(days=1)
    )
    environment = library_environment(workspace.root)
    project_port, mlflow_port = free_port(), free_port()
    model_uri = f"models:/{settings.mlflow.model_name}@champion"
    results = []
    with running(folder / "serving", environment) as stack:
        stack.start("mlops-serve", [str(BIN / "mlops"), "serve", "--port", str(project_port)])
        stack.start(
            "mlflow-serve",
            [
                str(BIN / "mlflow"),
                "models",
                "serve",
                "-m",
                model_uri,
                "--env-manager",
                "local",
                "-h",
                "127.0.0.1",
                "-p",
                str(mlflow_port),
            ],
        )
        project, mlflow = f"http://127.0.0.1:{project_port}", f"http://127.0.0.1:{mlflow_port}"
        for name, url in (("mlops-serve", f"{project}/health"), ("mlflow-serve", f"{mlflow}/ping")):
            wait_until(lambda n=name, u=url: stack.check_alive(n) or answers(u), 300, name)
        for batch in (1, 100):
            ids = _request_ids(workspace, batch, requests + WARM_UP, seed=batch)
            ours_bodies = [{"customer_ids": chunk} for chunk in ids]
            theirs_bodies = _inline_bodies(workspace, ids)
            with httpx.Client(base_url=project, timeout=30) as client:
                _latencies(client, "/predict", ours_bodies[:WARM_UP])
                ours = _latencies(client, "/predict", ours_bodies[WARM_UP:])
            with httpx.Client(base_url=mlflow, timeout=30) as client:
                _latencies(client, "/invocations", theirs_bodies[:WARM_UP])
                theirs = _latencies(client, "/invocations", theirs_bodies[WARM_UP:])
            (ours_p50, ours_p99), (theirs_p50, theirs_p99) = (
                np.percentile(ours, [50, 99]),
                np.percentile(theirs, [50, 99]),
            )
            results.append(
                Result(
                    stage="online scoring",
                    name=f"POST /predict p99, {batch} entit{'y' if batch == 1 else 'ies'}",
                    size=f"{requests} requests",
                    measured=float(ours_p99),
                    baseline=float(theirs_p99),
                    baseline_name="mlflow models serve, features inline",
                    unit="ms",
                    target=1.5,
                    note=f"p50 {ours_p50:.1f} ms against {theirs_p50:.1f} ms; mlops serve predicts "
                    "on one thread, MLflow's server with its defaults (OpenMP on every core)",
                    samples={"mlops serve": ours, "mlflow models serve": theirs},
                )
            )
    return results
