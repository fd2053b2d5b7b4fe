"""Prefect: which API the runs reach and how fanned-out tasks run."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field, SecretStr

from mlops_flows.settings.group import Group


class TaskRunnerKind(StrEnum):
    """How a flow's fanned-out tasks run: threads in the flow's process, or on Dask."""

    THREAD = "thread"
    DASK = "dask"


class PrefectSettings(Group):
    """How local runs reach a Prefect API."""

    api_url: str | None = Field(
        default=None,
        description="Prefect API to use; empty means a local `mlops server` if one is up, "
        "else a temporary server for the run.",
    )
    server_host: str = Field(default="127.0.0.1", description="Host `mlops server` binds.")
    server_port: int = Field(default=4200, description="Port `mlops server` binds.")
    auth_string: SecretStr | None = Field(
        default=None,
        description="`user:password` that the production Prefect server asks of every API call "
        "(basic auth; `mlops stack up` refuses to start without one whose password has 12 "
        "characters or more). The CLI and flows send it as PREFECT_API_AUTH_STRING; give workers "
        "and `prefect deploy` PREFECT_API_AUTH_STRING too.",
    )
    ephemeral_startup_timeout_seconds: int = Field(
        default=120, description="Time a temporary server may take to start on a slow machine."
    )
    task_runner: TaskRunnerKind = Field(
        default=TaskRunnerKind.THREAD,
        description="`thread`: fanned-out tasks (per-segment drift) run on threads; `dask`: on "
        "a Dask cluster (a local one bound to 127.0.0.1, or `dask_address`).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Scheduler of an existing Dask cluster (`tcp://host:8786`); empty means a "
        "temporary local cluster for each fan-out.",
    )
    dask_workers: int = Field(
        default=2, ge=1, description="Worker processes of the temporary local Dask cluster."
    )
