"""A real `mlflow server` subprocess (SQLite backend) that a test can stop, kill and restart."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.e2e.stack import BIN, free_port, wait_until


@dataclass
class MlflowServer:
    """One tracking server on a fixed free loopback port, so a restart keeps its URI."""

    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database(self) -> Path:
        return self.folder / "mlflow.db"

    def start(self, timeout: float = 180.0) -> float:
        """Start on the same database and port; return the seconds until /health answered."""
        assert self.process is None or self.process.poll() is not None, "already running"
        self.starts += 1
        environment = {
            k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "MLFLOW_"))
        }
        environment["MLFLOW_DISABLE_TELEMETRY"] = "true"
        # The job executor starts consumer processes that the tests do not need.
        environment["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        started = time.monotonic()
        with (self.folder / f"server-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(BIN / "mlflow"),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{self.database}",
                    "--artifacts-destination",
                    str(self.folder / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--workers",
                    "1",
                ],
                cwd=self.folder,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: the workers die with it
            )
        wait_until(self._healthy, timeout, f"mlflow server at {self.uri}", poll=0.25)
        return time.monotonic() - started

    def ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.start()

    def _healthy(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, f"mlflow server exited:\n{self.log()}"
        try:
            return httpx.get(f"{self.uri}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def log(self) -> str:
        return (self.folder / f"server-{self.starts}.log").read_text(errors="replace")[-5000:]

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean shutdown, like a crashed host."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """A clean stop (SIGTERM), SIGKILL if it does not go within 30 s."""
        self._signal(signal.SIGTERM)

    def _signal(self, number: signal.Signals) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, number)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Workers of the group may outlive the parent for a moment: wait until the port is free.
        wait_until(lambda: not self._listening(), 30, f"port {self.port} to be released", 0.1)

    def _listening(self) -> bool:
        try:
            httpx.get(f"{self.uri}/health", timeout=1)
        except httpx.TransportError:
            return False
        return True
