"""How the stack runs a server: in its own process group, recorded in the stack's folder,
watched until it answers its health check, and stopped with all its workers.

A server inherits only the system's basics and its own library's settings from the
environment that starts it (`server_environment`).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

from mlops_flows.errors import MlopsError

# What a server inherits from the environment that starts it: the system's basics and the
# settings of its own library, never a client's credentials, another server's secrets (the
# Prefect server never sees the MLflow admin password) or how the caller's Python was started.
SYSTEM_VARIABLES = frozenset(
    {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "USER", "LOGNAME"}
    | {"SSL_CERT_FILE", "SSL_CERT_DIR"}
)
CLIENT_VARIABLES = (
    "PREFECT_API_URL",
    "PREFECT_API_KEY",
    "PREFECT_API_AUTH_STRING",
    "MLFLOW_TRACKING_",  # its URI, user name, password and token
)


class StackError(MlopsError):
    """The stack cannot be started, checked or stopped as configured."""


@dataclass(frozen=True)
class ServiceStatus:
    """One service: where it answers, whether it is healthy, and why not."""

    name: str
    url: str
    healthy: bool
    detail: str
    pid: int | None = None


@dataclass(frozen=True)
class Launch:
    """How one server is started: its argv, extra environment and health URL."""

    name: str
    argv: list[str]
    library: str  # the prefix of its settings' variables (server_environment)
    environment: dict[str, str]
    url: str
    health_url: str


def server_environment(library: str, own: dict[str, str]) -> dict[str, str]:
    """The whole environment of a server of `library` ("PREFECT_", "MLFLOW_"): what it
    inherits (SYSTEM_VARIABLES, its library's settings but the client's), then its own."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name in SYSTEM_VARIABLES
        or (name.startswith(library) and not name.startswith(CLIENT_VARIABLES))
    }
    return inherited | own


def start(folder: Path, launch: Launch) -> subprocess.Popen[bytes]:
    """Start the server in its own process group, logging to and recorded in `folder`."""
    with (folder / f"{launch.name}.log").open("ab") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            launch.argv,
            env=server_environment(launch.library, launch.environment),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: `down` stops its workers too
        )
    record = {"pid": process.pid, "created": psutil.Process(process.pid).create_time()}
    (folder / f"{launch.name}.json").write_text(json.dumps(record | {"url": launch.url}))
    return process


def await_healthy(
    process: subprocess.Popen[bytes], launch: Launch, folder: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not is_healthy(launch.health_url):
        if process.poll() is not None:
            raise StackError(
                f"{launch.name} exited with code {process.returncode} before it was healthy; "
                f"the end of {folder / f'{launch.name}.log'}:\n{_tail(folder, launch.name)}"
            )
        if time.monotonic() > deadline:
            raise StackError(
                f"{launch.name} did not answer {launch.health_url} within {timeout:.0f} s "
                "(MLOPS_STACK__STARTUP_TIMEOUT_SECONDS); the end of its log:\n"
                f"{_tail(folder, launch.name)}"
            )
        time.sleep(0.5)


def _tail(folder: Path, name: str) -> str:
    path = folder / f"{name}.log"
    return path.read_text(errors="replace")[-3000:] if path.is_file() else "(no log)"


def recorded_process(folder: Path, name: str) -> psutil.Process | None:
    """The recorded server process if it still runs (a reused pid is not it)."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    try:
        process = psutil.Process(int(record["pid"]))
        alive = process.status() != psutil.STATUS_ZOMBIE
        if alive and abs(process.create_time() - float(record["created"])) < 1:
            return process
    except psutil.Error:
        pass
    return None


def stop(folder: Path, name: str, timeout: float = 30) -> bool:
    """Stop the recorded server's whole process group; whether one was running."""
    process = recorded_process(folder, name)
    (folder / f"{name}.json").unlink(missing_ok=True)
    if process is None:
        return False
    group = process.pid  # started with start_new_session: its pid is its group id
    members = [process, *process.children(recursive=True)]
    os.killpg(group, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=timeout)
    if alive:
        os.killpg(group, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=timeout)
    return True


def is_healthy(url: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
