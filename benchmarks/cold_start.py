"""Cold start: `mlops --help`, and the first task of a local flow run, against `python -c pass`."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import Result
from benchmarks.servers import BIN, Stack, library_environment

FIRST_TASK = """
import time
from prefect import flow, task

@task
def first():
    print(f"FIRST_TASK {time.time()}", flush=True)

@flow
def cold():
    first()

cold()
"""


def _seconds(command: list[str], environment: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=environment, timeout=600)
    return time.perf_counter() - started


def first_task_seconds(environment: dict[str, str], repeats: int) -> float:
    """Median seconds from starting a process to the body of its flow's first task."""
    timings = []
    for _ in range(repeats):
        started = time.time()
        completed = subprocess.run(
            [sys.executable, "-c", FIRST_TASK],
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        line = next(x for x in completed.stdout.splitlines() if x.startswith("FIRST_TASK"))
        timings.append(float(line.split()[1]) - started)
    return statistics.median(timings)


def measure_cold_start(folder: Path, server: Stack | None, repeats: int) -> list[Result]:
    """Medians of `python -c pass`, `mlops --help`, and a one-task flow on a temporary server
    and on the run's Prefect server."""
    python = statistics.median(_seconds([sys.executable, "-c", "pass"]) for _ in range(5))
    workspace = Path(tempfile.mkdtemp(prefix="cold-", dir=folder))
    environment = library_environment(workspace) | {
        "PREFECT_HOME": str(workspace / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
    }
    environment.pop("PREFECT_API_URL", None)
    cli = statistics.median(
        _seconds([str(BIN / "mlops"), "--help"], environment) for _ in range(repeats + 2)
    )
    flow = first_task_seconds(environment, repeats)
    temporary = "no PREFECT_API_URL: each run starts a temporary Prefect server"
    results = [
        Result(
            stage="cold start",
            name="mlops --help",
            size="-",
            measured=cli,
            baseline=python,
            baseline_name="python -c pass",
            note=f"median of {repeats + 2}",
        ),
        Result(
            stage="cold start",
            name="first task of a local flow run, temporary server",
            size="-",
            measured=flow,
            baseline=python,
            baseline_name="python -c pass",
            note=f"{temporary}; median of {repeats}",
        ),
    ]
    if server is not None:
        results.append(
            Result(
                stage="cold start",
                name="first task of a local flow run, running server",
                size="-",
                measured=first_task_seconds(server.environment, repeats + 1),
                baseline=python,
                baseline_name="python -c pass",
                note=f"the benchmark's `prefect server`; median of {repeats + 1}",
            )
        )
    return results
