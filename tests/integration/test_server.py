"""`mlops server` starts a Prefect API on loopback, and local runs then reuse it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_flows.ops import runtime
from mlops_flows.settings import Settings

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[Settings]:
    """`mlops server` on a free port with its own workspace; stopped with SIGINT afterwards."""
    port = _free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLOPS_"))}
    environment |= {
        "MLOPS_HOME": str(tmp_path / "workspace"),
        "MLOPS_PREFECT__SERVER_PORT": str(port),
    }
    mlops = Path(sys.executable).with_name("mlops")
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen(
        [str(mlops), "server"],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    settings = Settings(home=tmp_path / "workspace")
    settings.prefect.server_port = port
    try:
        deadline = time.monotonic() + 120
        while not runtime.server_is_up(runtime.local_server_url(settings)):
            assert process.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, "server not healthy after 120 s"
            time.sleep(0.5)
        yield settings
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_local_runs_use_a_running_mlops_server(
    local_server: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("PREFECT_API_URL", *local_server.library_environment()):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(local_server.prefect, "api_url", None)
    chosen = runtime.prepare(local_server)
    url = runtime.local_server_url(local_server)
    assert url in chosen
    assert os.environ["PREFECT_API_URL"] == url
    assert (local_server.home_resolved / "prefect").is_dir()
