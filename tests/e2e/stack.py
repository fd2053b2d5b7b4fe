"""A real Prefect server, worker and scoring service as subprocesses on free loopback ports."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from tests.support import CHECKOUT, EVENTS_STORED_WITHIN_HALF_A_SECOND

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str, poll: float = 0.5) -> Any:
    """Poll until `condition()` is truthy; its value, or an AssertionError naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


@dataclass
class Stack:
    """Processes started for one test module; `stop()` ends every one of them."""

    folder: Path
    environment: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    grace: dict[str, float] = field(default_factory=dict)  # seconds each may take to stop
    _csrf: dict[str, str] | None = None  # a CSRF token of the API, fetched on first use

    @property
    def api_url(self) -> str:
        return self.environment["PREFECT_API_URL"]

    def deploy_and_start_worker(self, *names: str) -> None:
        """Once the server answers: the work pool, the named deployments of prefect.yaml
        (`flow/deployment`; every one without a name), the Feast repository applied, and a
        process worker."""
        wait_until(self.healthy, 180, "the Prefect server")
        self.create_work_pool()
        chosen = [option for name in names for option in ("--name", name)] or ["--all"]
        self.run(str(BIN / "prefect"), "--no-prompt", "deploy", *chosen)
        self.run(str(BIN / "mlops"), "features", "apply")
        # Once it has run flows, it may take 30 s to end on SIGINT although no run is left.
        self.start(
            "worker",
            [str(BIN / "prefect"), "worker", "start", "--pool", "mlops-process"],
            stop_grace=3,
        )

    def create_work_pool(self) -> None:
        """The work pool of docs/operations.md: a process pool whose runs take no command or
        environment from their caller (work-pool.json)."""
        self.run(
            str(BIN / "prefect"),
            *("work-pool", "create", "mlops-process", "--type", "process", "--overwrite"),
            *("--base-job-template", str(CHECKOUT / "work-pool.json")),
        )

    def healthy(self) -> bool:
        """Whether the Prefect API answers its health check; an AssertionError with its log if
        the server this stack started has exited (waiting longer would not help)."""
        if "server" in self.processes:
            self.check_alive("server")
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """One call to the Prefect API, with the stack's login and, for a state-changing call,
        a CSRF token when the server has both (the production profile); its JSON answer."""
        headers = self._login_headers(method)

        def answer() -> httpx.Response | None:
            response = httpx.request(
                method, f"{self.api_url}{path}", timeout=30, headers=headers, **kwargs
            )
            # A SQLite-backed server answers 503 while its database is locked (a loaded
            # machine); the request did not happen: ask again.
            return None if response.status_code == 503 else response

        response = wait_until(answer, 60, f"{method} {path} without 503", poll=1)
        response.raise_for_status()
        return response.json() if response.content else None

    def _login_headers(self, method: str) -> dict[str, str]:
        auth = self.environment.get("PREFECT_API_AUTH_STRING")
        if auth is None:
            return {}
        headers = {"Authorization": f"Basic {base64.b64encode(auth.encode()).decode()}"}
        if method == "GET":
            return headers
        if self._csrf is None:
            client = str(uuid.uuid4())
            response = httpx.get(
                f"{self.api_url}/csrf-token", params={"client": client}, headers=headers
            )
            response.raise_for_status()
            self._csrf = {
                "Prefect-Csrf-Token": response.json()["token"],
                "Prefect-Csrf-Client": client,
            }
        return headers | self._csrf

    def events(self, name: str, since: datetime | None = None) -> list[dict[str, Any]]:
        """Events of one name the server holds (the last 50), since a time if given."""
        found: dict[str, Any] = {"event": {"name": [name]}}
        if since is not None:
            found["occurred"] = {"since": since.isoformat()}
        return list(
            self.api("POST", "/events/filter", json={"filter": found, "limit": 50})["events"]
        )

    @contextlib.contextmanager
    def holding_registry_lock(self, model: str) -> Iterator[None]:
        """Occupy the registry lock's one slot through the API, as another promotion would.
        (Through the REST API: Prefect's in-process slot service keeps the first server it
        used.)"""
        from mlops_flows.registry.lock import lock_name

        name = lock_name(model)
        with contextlib.suppress(httpx.HTTPStatusError):  # it exists already
            self.api("POST", "/v2/concurrency_limits/", json={"name": name, "limit": 1})
        lease = self.api(
            "POST",
            "/v2/concurrency_limits/increment-with-lease",
            json={"names": [name], "slots": 1, "mode": "concurrency", "lease_duration": 600},
        )
        try:
            yield
        finally:
            self.api(
                "POST",
                "/v2/concurrency_limits/decrement-with-lease",
                json={"lease_id": lease["lease_id"]},
            )

    def start_prefect_server(self) -> None:
        """`prefect server start`."""
        self.start("server", [str(BIN / "prefect"), "server", "start"])

    def start(
        self,
        name: str,
        command: list[str],
        extra: dict[str, str] | None = None,
        stop_grace: float = 30,
    ) -> None:
        self.grace[name] = stop_grace
        environment = self.environment | (extra or {})
        with (self.folder / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            self.processes[name] = subprocess.Popen(
                command,
                cwd=CHECKOUT,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: children are stopped with it
            )

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")[-5000:]

    def check_alive(self, name: str) -> None:
        assert self.processes[name].poll() is None, f"{name} exited:\n{self.log(name)}"

    def run(self, *command: str, extra: dict[str, str] | None = None) -> str:
        completed = subprocess.run(
            list(command),
            cwd=CHECKOUT,
            env=self.environment | (extra or {}),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        return completed.stdout

    def stop(self, *names: str) -> None:
        """Stop the named processes (all of them without a name) and their children, the last
        started first: a client (the worker) before its server."""
        for name in reversed(names or list(self.processes)):
            process = self.processes.pop(name)
            if process.poll() is None:  # SIGINT: `prefect worker start` may hang on SIGTERM
                os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=self.grace[name])
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def files_in_home(environment: dict[str, str]) -> list[str]:
    """What the stack's processes wrote to their HOME: nothing, if all state is in the
    workspace."""
    home = Path(environment["HOME"])
    return sorted(str(path.relative_to(home)) for path in home.rglob("*"))


def base_environment(folder: Path, workspace: Path) -> dict[str, str]:
    """The environment every process of the stack shares: an empty HOME (`files_in_home`),
    loopback only."""
    port = free_port()
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLOPS_"))}
    keep.pop("MLFLOW_TRACKING_URI", None)
    (folder / "home").mkdir(exist_ok=True)
    (workspace / "prefect").mkdir(parents=True, exist_ok=True)  # Prefect makes no parents
    return keep | {
        # An empty home: every process keeps its state in the workspace (checked at the end).
        "HOME": str(folder / "home"),
        "PREFECT_HOME": str(workspace / "prefect"),  # as docs/operations.md has it for the worker
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # No cron runs: the hourly materialization would otherwise start on the worker
        # whenever a test spans minute 5 of an hour. Tests start every run they need.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        **EVENTS_STORED_WITHIN_HALF_A_SECOND,
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "1",
        "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "MLOPS_HOME": str(workspace),
        "MLOPS_PROJECT_DIR": str(CHECKOUT),
        "MLOPS_SERVING__PORT": str(free_port()),
    }
