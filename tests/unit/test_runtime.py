"""Unit tests of which Prefect API `runtime.prepare` picks, with a tiny local health server."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_flows.ops import runtime
from mlops_flows.settings import Settings
from tests.support import unset


class HealthHandler(BaseHTTPRequestHandler):
    """Answers `GET /api/health` like a Prefect server; anything else is a 404."""

    def do_GET(self) -> None:
        status = 200 if self.path == "/api/health" else 404
        body = b"true" if status == 200 else b"not found"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean


@pytest.fixture
def health_server() -> Iterator[int]:
    """A loopback server on a free port answering the health check; its port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), HealthHandler)
    # A short poll interval so shutdown() in teardown returns at once.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port held by a socket that never listens, so connections are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        yield held.getsockname()[1]


@pytest.fixture
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A workspace folder; every variable prepare may write is recorded for restoring."""
    home = tmp_path / "workspace"
    for name in Settings(home=home).library_environment():
        unset(monkeypatch, name)
    for name in [n for n in os.environ if n.startswith("MLOPS_")]:
        unset(monkeypatch, name)
    unset(monkeypatch, "PREFECT_API_URL")
    return home


def test_prefect_api_url_in_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, home: Path, health_server: int
) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    monkeypatch.setenv("MLOPS_PREFECT__API_URL", "http://settings.example:4200/api")
    monkeypatch.setenv("MLOPS_PREFECT__SERVER_PORT", str(health_server))

    message = runtime.prepare(Settings(home=home))

    assert "http://prefect.example:4200/api (from PREFECT_API_URL)" in message
    assert os.environ["PREFECT_API_URL"] == "http://prefect.example:4200/api"


def test_mlops_prefect_api_url_comes_next(
    monkeypatch: pytest.MonkeyPatch, home: Path, health_server: int
) -> None:
    monkeypatch.setenv("MLOPS_PREFECT__API_URL", "http://settings.example:4200/api")
    monkeypatch.setenv("MLOPS_PREFECT__SERVER_PORT", str(health_server))

    message = runtime.prepare(Settings(home=home))

    assert "(from MLOPS_PREFECT__API_URL)" in message
    assert os.environ["PREFECT_API_URL"] == "http://settings.example:4200/api"


def test_a_running_local_server_is_used(
    monkeypatch: pytest.MonkeyPatch, home: Path, health_server: int
) -> None:
    monkeypatch.setenv("MLOPS_PREFECT__SERVER_PORT", str(health_server))

    message = runtime.prepare(Settings(home=home))

    expected = f"http://127.0.0.1:{health_server}/api"
    assert os.environ["PREFECT_API_URL"] == expected
    assert f"Prefect API {expected} (the running `mlops server`)" in message


def test_without_a_server_a_temporary_one_is_announced(
    monkeypatch: pytest.MonkeyPatch, home: Path, closed_port: int
) -> None:
    monkeypatch.setenv("MLOPS_PREFECT__SERVER_PORT", str(closed_port))

    message = runtime.prepare(Settings(home=home))

    assert "temporary Prefect server" in message
    assert "PREFECT_API_URL" not in os.environ


def test_prepare_creates_the_workspace_and_exports_its_environment(
    monkeypatch: pytest.MonkeyPatch, home: Path, closed_port: int
) -> None:
    monkeypatch.setenv("MLOPS_PREFECT__SERVER_PORT", str(closed_port))
    settings = Settings(home=home)

    runtime.prepare(settings)

    assert (home / "prefect").is_dir()
    assert (home / "mlflow" / "artifacts").is_dir()
    assert os.environ["MLOPS_HOME"] == str(settings.home_resolved)
    assert os.environ["MLFLOW_TRACKING_URI"] == settings.tracking_uri
    assert os.environ["PREFECT_HOME"] == str(settings.home_resolved / "prefect")


@pytest.mark.parametrize(("path", "expected"), [("/api", True), ("/elsewhere", False)])
def test_server_is_up_asks_the_health_endpoint(
    health_server: int, path: str, expected: bool
) -> None:
    assert runtime.server_is_up(f"http://127.0.0.1:{health_server}{path}") is expected


@pytest.mark.parametrize("url", ["not a url", "http://127.0.0.1:{port}/api"])
def test_server_is_up_is_false_when_nothing_answers(closed_port: int, url: str) -> None:
    assert runtime.server_is_up(url.format(port=closed_port)) is False
