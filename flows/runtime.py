"""Entry-point set-up: the libraries' environment and which Prefect API local runs use."""

from __future__ import annotations

import os
import urllib.error
import urllib.request

from flows.settings import Settings
from flows.workspace import Workspace


def prepare(settings: Settings) -> str:
    """Create the workspace, export the libraries' environment, pick the Prefect API."""
    Workspace(settings.home_resolved).ensure()  # Prefect needs its home before it is imported
    settings.export_library_environment()
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
