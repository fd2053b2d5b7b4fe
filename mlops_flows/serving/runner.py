"""Run the scoring service in this process on a free loopback port (demo loop and tests)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from mlops_flows.errors import MlopsError
from mlops_flows.serving.contract import HEALTH
from mlops_flows.settings import Settings

URL_VARIABLE = "MLOPS_SERVING__URL"


class ServiceStartError(MlopsError):
    """The service stopped or stayed unhealthy while starting."""


@contextmanager
def running_service(settings: Settings, timeout: float = 120.0) -> Iterator[str]:
    """Serve `create_app(settings)` on 127.0.0.1; yield its base URL once HEALTH answers.

    While it serves, MLOPS_SERVING__URL points the flows of this process (redeploy, rollback)
    at it: they take the service's address from settings, never from a parameter.
    """
    import uvicorn

    from mlops_flows.serving.app import create_app

    # The socket is bound here and handed over, so no other process can take the port between.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    config = uvicorn.Config(create_app(settings), log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    def serve() -> None:
        # uvicorn exits when the app fails to start; its error is logged and we raise below.
        with suppress(SystemExit):
            server.run(sockets=[listener])

    thread = threading.Thread(target=serve, name=f"service {url}", daemon=True)
    thread.start()
    before = os.environ.get(URL_VARIABLE)
    try:
        _wait_until_healthy(url, thread, timeout)
        os.environ[URL_VARIABLE] = url
        yield url
    finally:
        if before is None:
            os.environ.pop(URL_VARIABLE, None)
        else:
            os.environ[URL_VARIABLE] = before
        server.should_exit = True
        thread.join(timeout=30)
        listener.close()
        if thread.is_alive():
            raise ServiceStartError(f"The service at {url} did not stop within 30 s.")


def _wait_until_healthy(url: str, thread: threading.Thread, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=2.0) as client:
        while True:
            if not thread.is_alive():
                raise ServiceStartError(
                    f"The service at {url} stopped while starting; its error is logged above."
                )
            try:
                if client.get(HEALTH).status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet: the model and feature store load first
            if time.monotonic() > deadline:
                raise ServiceStartError(f"The service at {url} was not healthy after {timeout} s.")
            time.sleep(0.1)
