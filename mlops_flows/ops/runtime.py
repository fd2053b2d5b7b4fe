"""Entry-point set-up: the libraries' environment and which Prefect API local runs use."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from mlops_flows.errors import MlopsError
from mlops_flows.ops.workspace import Workspace
from mlops_flows.settings import Settings


class FlowParameters(BaseModel):
    """Base of every flow's parameters: an unknown field fails the run, so a typo or a removed
    parameter (say `service_url`) never looks as if it took effect."""

    model_config = ConfigDict(extra="forbid")


def prepare(settings: Settings, scoring: bool = False) -> str:
    """Create the workspace, export the libraries' environment (`scoring`: with the scoring
    service's MLflow login), pick the Prefect API."""
    Workspace(settings.home_resolved).ensure()  # Prefect needs its home before it is imported
    settings.export_library_environment(scoring)
    if os.environ.get("PREFECT_API_URL"):
        return f"Prefect API {os.environ['PREFECT_API_URL']} (from PREFECT_API_URL)"
    if settings.prefect.api_url:
        os.environ["PREFECT_API_URL"] = settings.prefect.api_url
        return f"Prefect API {settings.prefect.api_url} (from MLOPS_PREFECT__API_URL)"
    local = local_server_url(settings)
    if settings.is_production:
        # Never a temporary server: its runs would be lost with it.
        os.environ["PREFECT_API_URL"] = local
        health = "" if server_is_up(local) else "; not answering yet: `mlops stack up`"
        return f"Prefect API {local} (the production stack{health})"
    if server_is_up(local):
        os.environ["PREFECT_API_URL"] = local
        return f"Prefect API {local} (the running `mlops server`)"
    return (
        "a temporary Prefect server for this run (start `mlops server` in another terminal "
        "to keep run history and skip the start-up cost)"
    )


def local_server_url(settings: Settings) -> str:
    return f"http://{settings.prefect.server_host}:{settings.prefect.server_port}/api"


def server_is_up(api_url: str, timeout: float = 0.5) -> bool:
    """True when a Prefect API answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:  # noqa: S310
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


class DeployEnvironmentError(MlopsError):
    """`prefect deploy` would store deployments whose runs cannot start."""


def check_project_dir(directory: str) -> dict[str, str]:
    """The build step of `prefect.yaml`: the folder the pull step will enter on the worker must
    be a checkout of the project. Prefect leaves an unset `{{ $MLOPS_PROJECT_DIR }}` as it is
    and stores it; every run would then fail on the worker, long after the deploy said done."""
    if "{{" in directory or not directory.strip():
        raise DeployEnvironmentError(
            "MLOPS_PROJECT_DIR is not set: deployments would have no folder to run in. Deploy "
            "with MLOPS_PROJECT_DIR=<the project's folder on the worker's machine>, e.g. "
            "`MLOPS_PROJECT_DIR=$PWD prefect --no-prompt deploy --all`."
        )
    if not (Path(directory) / "prefect.yaml").is_file():
        raise DeployEnvironmentError(
            f"MLOPS_PROJECT_DIR={directory} holds no prefect.yaml: it must be the project's "
            "folder on the worker's machine."
        )
    return {"directory": directory}
