"""Which Prefect task runner a fan-out uses: threads, or Dask (a local cluster on loopback)."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from mlops_flows.settings import PrefectSettings, TaskRunnerKind


def task_runner_for(settings: PrefectSettings) -> Any:
    """A new, unstarted task runner as configured; enter it to start it."""
    if settings.task_runner == TaskRunnerKind.THREAD:
        return ThreadPoolTaskRunner()
    from prefect_dask.task_runners import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    # Loopback only (Dask binds every interface unless told), no dashboard (a fixed port
    # collides between runs), one thread a worker: the libraries are not all thread-safe.
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "host": "127.0.0.1",
            "dashboard_address": None,
        }
    )
