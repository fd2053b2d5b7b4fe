"""The MLflow and Prefect servers of the stack as configured: their commands and
environments, the logins they demand, and the MLflow role accounts `stack up` sets up."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_flows.ops.supervision import Launch, StackError
from mlops_flows.ops.workspace import Workspace
from mlops_flows.settings import Settings

if TYPE_CHECKING:
    from pydantic import SecretStr

MLFLOW, PREFECT = "mlflow", "prefect"
SERVERS = (MLFLOW, PREFECT)
# Passwords that ship in examples (MLflow's own old default first): never accepted.
WELL_KNOWN_PASSWORDS = frozenset(
    {"password1234", "password", "admin", "adminadmin1234", "changeme", "mlflow", "123456789012"}
)
MIN_PASSWORD_LENGTH = 12  # MLflow's own rule for its users


def stack_folder(settings: Settings) -> Path:
    return Workspace(settings.home_resolved).root / "stack"


def _strong(secret: SecretStr | None, variable: str, what: str) -> str:
    """A password, or an error when it is missing, short or well known."""
    if secret is None or not secret.get_secret_value():
        raise StackError(
            f"No {what}: set {variable} (12 characters or more, not a default) before "
            "`mlops stack up`."
        )
    password = secret.get_secret_value()
    if len(password) < MIN_PASSWORD_LENGTH or password.lower() in WELL_KNOWN_PASSWORDS:
        raise StackError(
            f"{variable} is too short or a well-known default: choose one of "
            f"{MIN_PASSWORD_LENGTH} characters or more, e.g. `openssl rand -hex 16`."
        )
    return password


def check_admin_password(settings: Settings) -> str:
    """The MLflow admin password: only `stack up` uses it, to create the role accounts."""
    return _strong(
        settings.mlflow.admin_password, "MLOPS_MLFLOW__ADMIN_PASSWORD", "MLflow admin password"
    )


def role_accounts(settings: Settings) -> dict[str, str]:
    """The MLflow accounts `stack up` creates, by user name: the governance account (worker,
    `mlops` commands) and the read-only scoring account (`mlops serve`)."""
    mlflow = settings.mlflow
    return {
        mlflow.governance_username: _strong(
            mlflow.governance_password,
            "MLOPS_MLFLOW__GOVERNANCE_PASSWORD",
            "password for the MLflow governance account",
        ),
        mlflow.scoring_username: _strong(
            mlflow.scoring_password,
            "MLOPS_MLFLOW__SCORING_PASSWORD",
            "password for the MLflow scoring account",
        ),
    }


def ensure_accounts(settings: Settings) -> list[str]:
    """Create each role account, or set its password to the configured one (so `stack up` is
    safe to run twice and rotates passwords); the names created."""
    import httpx

    admin = (settings.mlflow.admin_username, check_admin_password(settings))
    url = f"http://{settings.mlflow.server_host}:{settings.mlflow.server_port}/api/2.0/mlflow"
    created = []
    with httpx.Client(base_url=url, auth=admin, timeout=30) as http:
        for username, password in role_accounts(settings).items():
            account = {"username": username, "password": password}
            answer = http.post("/users/create", json=account)
            if answer.status_code == 200:
                created.append(username)
                continue
            if "RESOURCE_ALREADY_EXISTS" in answer.text:
                answer = http.patch("/users/update-password", json=account)
            if answer.status_code != 200:
                raise StackError(
                    f"The MLflow server at {url} refused to set up account {username!r} "
                    f"({answer.status_code}: {answer.text[:300]})."
                )
    return created


def check_prefect_auth(settings: Settings) -> str:
    """The Prefect server's `user:password`, or an error when it is missing or its password
    short or well known: without it, anyone who reaches the API could approve a version or
    run a command on a worker."""
    secret = settings.prefect.auth_string
    user, _, password = (secret.get_secret_value() if secret else "").partition(":")
    if not user or not password:
        raise StackError(
            "No Prefect API login: set MLOPS_PREFECT__AUTH_STRING to `user:password` (a "
            f"password of {MIN_PASSWORD_LENGTH} characters or more) before `mlops stack up`; "
            "the CLI and flows send it, and workers need it as PREFECT_API_AUTH_STRING."
        )
    if len(password) < MIN_PASSWORD_LENGTH or password.lower() in WELL_KNOWN_PASSWORDS:
        raise StackError(
            "The password of MLOPS_PREFECT__AUTH_STRING is too short or a well-known default: "
            f"choose one of {MIN_PASSWORD_LENGTH} characters or more, e.g. `openssl rand -hex 16`."
        )
    return f"{user}:{password}"


def launches(settings: Settings) -> list[Launch]:
    """The two servers as configured: loopback by default, state on PostgreSQL."""
    workspace = Workspace(settings.home_resolved)
    folder = stack_folder(settings)
    binaries = Path(sys.executable).parent
    mlflow_url = f"http://{settings.mlflow.server_host}:{settings.mlflow.server_port}"
    prefect_url = f"http://{settings.prefect.server_host}:{settings.prefect.server_port}"
    mlflow = Launch(
        name=MLFLOW,
        argv=[
            str(binaries / "mlflow"),
            "server",
            "--host",
            settings.mlflow.server_host,
            "--port",
            str(settings.mlflow.server_port),
            "--workers",
            "1",
            "--serve-artifacts",
            "--artifacts-destination",
            str(workspace.mlflow_artifacts),
            "--app-name",
            "basic-auth",
        ],
        library="MLFLOW_",
        environment={
            # In the environment, not on the command line: `ps` shows argv to every user.
            "MLFLOW_BACKEND_STORE_URI": settings.postgres.url("mlflow", "psycopg"),
            "MLFLOW_AUTH_CONFIG_PATH": str(folder / "mlflow-auth.ini"),
            "MLFLOW_AUTH_ADMIN_USERNAME": settings.mlflow.admin_username,
            "MLFLOW_AUTH_ADMIN_PASSWORD": check_admin_password(settings),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": _secret_key(folder / "mlflow-secret-key"),
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # Its job runner (GenAI jobs, unused here) forks eight more processes.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        },
        url=mlflow_url,
        health_url=f"{mlflow_url}/health",
    )
    prefect = Launch(
        name=PREFECT,
        argv=[
            str(binaries / "prefect"),
            "server",
            "start",
            "--host",
            settings.prefect.server_host,
            "--port",
            str(settings.prefect.server_port),
        ],
        library="PREFECT_",
        environment={
            "PREFECT_API_DATABASE_CONNECTION_URL": settings.postgres.url("prefect", "asyncpg"),
            "PREFECT_SERVER_API_HOST": settings.prefect.server_host,
            "PREFECT_SERVER_API_PORT": str(settings.prefect.server_port),
            "PREFECT_UI_API_URL": f"{prefect_url}/api",
            "PREFECT_HOME": str(workspace.prefect),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # Every API call authenticated; state-changing calls also need a CSRF token (the
            # Prefect client fetches one); browsers only from the UI's own origin.
            "PREFECT_SERVER_API_AUTH_STRING": check_prefect_auth(settings),
            "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
            "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": prefect_url,
        },
        url=prefect_url,
        health_url=f"{prefect_url}/api/health",
    )
    return [mlflow, prefect]


def status_targets(settings: Settings) -> list[Launch]:
    mlflow_url = f"http://{settings.mlflow.server_host}:{settings.mlflow.server_port}"
    prefect_url = f"http://{settings.prefect.server_host}:{settings.prefect.server_port}"
    return [
        Launch(MLFLOW, [], "MLFLOW_", {}, mlflow_url, f"{mlflow_url}/health"),
        Launch(PREFECT, [], "PREFECT_", {}, prefect_url, f"{prefect_url}/api/health"),
    ]


def _secret_key(path: Path) -> str:
    """A key kept in the workspace (mode 0600): the same across restarts and workers."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def write_auth_config(settings: Settings, path: Path) -> None:
    # No password in the file: the admin's comes from the environment of the server only.
    # READ: every account reads (the scoring service, people) and writes only what it created
    # (MLflow grants the creator MANAGE), so only the governance account, which creates the
    # experiments and registered models, writes them and moves their aliases. The credential
    # cache: each request otherwise re-hashes the password (seconds on a loaded machine); one
    # worker, so no other worker can keep a changed password for the cache's minute.
    url = settings.postgres.url("mlflow_auth", "psycopg")
    text = (
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {url}\nauth_cache_ttl_seconds = 60\n"
    )
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
