"""The production-like stack on this machine: MLflow and Prefect servers on PostgreSQL.

PostgreSQL and Redis are expected to run already (`status` reports them); `up` creates the
databases when missing, starts each server in its own process group, waits until it answers
its health check, and records it in `<workspace>/stack/`, where `down` finds it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from mlops_flows.errors import MlopsError
from mlops_flows.ops.workspace import Workspace
from mlops_flows.settings import Settings

if TYPE_CHECKING:
    import psycopg
    from pydantic import SecretStr

MLFLOW, PREFECT, POSTGRES, REDIS = "mlflow", "prefect", "postgres", "redis"
SERVERS = (MLFLOW, PREFECT)
# MLflow's auth tables live apart from its tracking tables: both sets are migrated by Alembic.
DATABASES = ("mlflow", "mlflow_auth", "prefect", "feast")
# Passwords that ship in examples (MLflow's own old default first): never accepted.
WELL_KNOWN_PASSWORDS = frozenset(
    {"password1234", "password", "admin", "adminadmin1234", "changeme", "mlflow", "123456789012"}
)
MIN_PASSWORD_LENGTH = 12  # MLflow's own rule for its users
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


def ensure_databases(settings: Settings) -> list[str]:
    """Create the stack's PostgreSQL databases that are missing; return the created ones."""
    import psycopg
    from psycopg import sql

    created = []
    with _connect(settings, "postgres") as connection:
        for service in DATABASES:
            name = settings.postgres.database(service)
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if found is None:
                try:
                    connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except psycopg.errors.DuplicateDatabase:
                    continue  # created by someone else meanwhile
                created.append(name)
    return created


def _connect(settings: Settings, database: str) -> psycopg.Connection[tuple[object, ...]]:
    import psycopg

    pg = settings.postgres
    password = pg.password.get_secret_value() if pg.password else None
    try:
        return psycopg.connect(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=password,
            dbname=database,
            connect_timeout=3,
            autocommit=True,
        )
    except psycopg.OperationalError as error:
        raise StackError(
            f"PostgreSQL at {pg.host}:{pg.port} (user {pg.user}) is not reachable "
            f"({_one_line(error)}). Start it, or set MLOPS_POSTGRES__HOST/PORT/USER/PASSWORD."
        ) from None


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


def _secret_key(path: Path) -> str:
    """A key kept in the workspace (mode 0600): the same across restarts and workers."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip()


def _write_auth_config(settings: Settings, path: Path) -> None:
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


def up(settings: Settings, say: Callable[[str], None] = lambda _: None) -> list[ServiceStatus]:
    """Start the servers that are not running, wait until each is healthy, set up the MLflow
    role accounts; their statuses."""
    check_admin_password(settings)
    role_accounts(settings)
    check_prefect_auth(settings)
    for service in (_postgres_status(settings), _redis_status(settings)):
        if not service.healthy:
            raise StackError(f"{service.name} at {service.url} is not usable: {service.detail}")
    created = ensure_databases(settings)
    if created:
        say(f"created database(s) {', '.join(created)}")
    folder = stack_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    _write_auth_config(settings, folder / "mlflow-auth.ini")
    started: dict[str, subprocess.Popen[bytes]] = {}
    plans = {launch.name: launch for launch in launches(settings)}
    for name, launch in plans.items():
        running = _recorded_process(folder, name)
        if running is not None:
            say(f"{name} already running at {launch.url} (pid {running.pid})")
            continue
        if _is_healthy(launch.health_url):
            raise StackError(
                f"Something not started by `mlops stack up` already answers {launch.health_url}. "
                "Stop it, or choose another port (MLOPS_MLFLOW__SERVER_PORT, "
                "MLOPS_PREFECT__SERVER_PORT)."
            )
        started[name] = _start(folder, launch)
        say(f"started {name} (pid {started[name].pid}), waiting for {launch.health_url}")
    try:
        for name, process in started.items():
            _await_healthy(process, plans[name], folder, settings.stack.startup_timeout_seconds)
    except StackError:
        for name in started:
            _stop(folder, name)
        raise
    accounts = ensure_accounts(settings)
    if accounts:
        say(f"created MLflow account(s) {', '.join(accounts)}")
    return status(settings)


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


def _start(folder: Path, launch: Launch) -> subprocess.Popen[bytes]:
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


def _await_healthy(
    process: subprocess.Popen[bytes], launch: Launch, folder: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not _is_healthy(launch.health_url):
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


def down(settings: Settings, timeout: float = 30) -> list[str]:
    """Stop every server `up` recorded (its whole process group); the names stopped."""
    folder = stack_folder(settings)
    return [name for name in SERVERS if _stop(folder, name, timeout)]


def _recorded_process(folder: Path, name: str) -> psutil.Process | None:
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


def _stop(folder: Path, name: str, timeout: float = 30) -> bool:
    process = _recorded_process(folder, name)
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


def status(settings: Settings) -> list[ServiceStatus]:
    """PostgreSQL, Redis and both servers: URL, health and pid."""
    folder = stack_folder(settings)
    found = [_postgres_status(settings), _redis_status(settings)]
    for launch in _status_targets(settings):
        process = _recorded_process(folder, launch.name)
        healthy = _is_healthy(launch.health_url)
        detail = "healthy" if healthy else f"no answer from {launch.health_url}"
        if process is None and healthy:
            detail += " (not started by `mlops stack up`)"
        found.append(
            ServiceStatus(
                launch.name, launch.url, healthy, detail, process.pid if process else None
            )
        )
    return found


def _status_targets(settings: Settings) -> list[Launch]:
    mlflow_url = f"http://{settings.mlflow.server_host}:{settings.mlflow.server_port}"
    prefect_url = f"http://{settings.prefect.server_host}:{settings.prefect.server_port}"
    return [
        Launch(MLFLOW, [], "MLFLOW_", {}, mlflow_url, f"{mlflow_url}/health"),
        Launch(PREFECT, [], "PREFECT_", {}, prefect_url, f"{prefect_url}/api/health"),
    ]


def _postgres_status(settings: Settings) -> ServiceStatus:
    pg = settings.postgres
    url = f"postgresql://{pg.user}@{pg.host}:{pg.port}"  # never the password
    try:
        with _connect(settings, "postgres") as connection:
            version = connection.execute("SHOW server_version").fetchone()
    except StackError as error:
        return ServiceStatus(POSTGRES, url, False, str(error))
    return ServiceStatus(POSTGRES, url, True, f"PostgreSQL {version[0] if version else '?'}")


def _redis_status(settings: Settings) -> ServiceStatus:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options = settings.redis
    url = f"redis://{options.host}:{options.port}/{options.db}"  # never the password
    password = options.password.get_secret_value() if options.password else None
    client = redis.Redis(
        host=options.host,
        port=options.port,
        db=options.db,
        password=password,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),  # a health check answers now, not after back-offs
    )
    try:
        client.ping()
    except redis.RedisError as error:
        return ServiceStatus(
            REDIS,
            url,
            False,
            f"not reachable ({_one_line(error)}). Start it (`redis-server --bind 127.0.0.1`), "
            "or set MLOPS_REDIS__HOST/PORT/PASSWORD.",
        )
    finally:
        client.close()
    return ServiceStatus(REDIS, url, True, "answers PING")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()).rstrip(".?")


def _is_healthy(url: str, timeout: float = 2) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False
