"""The production-like stack on this machine: MLflow and Prefect servers on PostgreSQL.

PostgreSQL and Redis are expected to run already (`status` reports them); `up` creates the
databases when missing, starts each server in its own process group, waits until it answers
its health check, and records it in `<workspace>/stack/`, where `down` finds it.

How a server is run is in `supervision`, what each server is in `servers`, PostgreSQL and
Redis in `databases`; here, the three commands.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from mlops_flows.ops.databases import ensure_databases, postgres_status, redis_status
from mlops_flows.ops.servers import (
    SERVERS,
    check_admin_password,
    check_prefect_auth,
    ensure_accounts,
    launches,
    role_accounts,
    stack_folder,
    status_targets,
    write_auth_config,
)
from mlops_flows.ops.supervision import (
    ServiceStatus,
    StackError,
    await_healthy,
    is_healthy,
    recorded_process,
    start,
    stop,
)
from mlops_flows.settings import Settings


def up(settings: Settings, say: Callable[[str], None] = lambda _: None) -> list[ServiceStatus]:
    """Start the servers that are not running, wait until each is healthy, set up the MLflow
    role accounts; their statuses."""
    check_admin_password(settings)
    role_accounts(settings)
    check_prefect_auth(settings)
    for service in (postgres_status(settings), redis_status(settings)):
        if not service.healthy:
            raise StackError(f"{service.name} at {service.url} is not usable: {service.detail}")
    created = ensure_databases(settings)
    if created:
        say(f"created database(s) {', '.join(created)}")
    folder = stack_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    write_auth_config(settings, folder / "mlflow-auth.ini")
    started: dict[str, subprocess.Popen[bytes]] = {}
    plans = {launch.name: launch for launch in launches(settings)}
    for name, launch in plans.items():
        running = recorded_process(folder, name)
        if running is not None:
            say(f"{name} already running at {launch.url} (pid {running.pid})")
            continue
        if is_healthy(launch.health_url):
            raise StackError(
                f"Something not started by `mlops stack up` already answers {launch.health_url}. "
                "Stop it, or choose another port (MLOPS_MLFLOW__SERVER_PORT, "
                "MLOPS_PREFECT__SERVER_PORT)."
            )
        started[name] = start(folder, launch)
        say(f"started {name} (pid {started[name].pid}), waiting for {launch.health_url}")
    try:
        for name, process in started.items():
            await_healthy(process, plans[name], folder, settings.stack.startup_timeout_seconds)
    except StackError:
        for name in started:
            stop(folder, name)
        raise
    accounts = ensure_accounts(settings)
    if accounts:
        say(f"created MLflow account(s) {', '.join(accounts)}")
    return status(settings)


def down(settings: Settings, timeout: float = 30) -> list[str]:
    """Stop every server `up` recorded (its whole process group); the names stopped."""
    folder = stack_folder(settings)
    return [name for name in SERVERS if stop(folder, name, timeout)]


def status(settings: Settings) -> list[ServiceStatus]:
    """PostgreSQL, Redis and both servers: URL, health and pid."""
    folder = stack_folder(settings)
    found = [postgres_status(settings), redis_status(settings)]
    for launch in status_targets(settings):
        process = recorded_process(folder, launch.name)
        healthy = is_healthy(launch.health_url)
        detail = "healthy" if healthy else f"no answer from {launch.health_url}"
        if process is None and healthy:
            detail += " (not started by `mlops stack up`)"
        found.append(
            ServiceStatus(
                launch.name, launch.url, healthy, detail, process.pid if process else None
            )
        )
    return found
