"""A private PostgreSQL cluster and Redis server on free loopback ports, for tests that restart
them: the machine's own services, which other tests use at the same time, are never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.stack import free_port

HINT = "install PostgreSQL's server binaries (initdb, pg_ctl) and redis-server"


def _postgres_binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian keeps it off the PATH)."""
    installed = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3])
    )
    if installed:
        return installed[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


@dataclass
class PrivateServices:
    """One PostgreSQL cluster (trust auth, user `postgres`) and one Redis, both restartable."""

    folder: Path
    postgres_port: int
    redis_port: int
    binaries: Path
    redis: subprocess.Popen[bytes] | None = None

    def _as_owner(self, *command: str) -> None:
        # PostgreSQL refuses to run as root: run its tools as the `postgres` user then.
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        # No pipes: the server that pg_ctl starts would hold them open.
        subprocess.run(
            [*prefix, *command],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )

    def _pg_ctl(self, action: str, *options: str) -> None:
        self._as_owner(
            str(self.binaries / "pg_ctl"), action, "-D", str(self.folder / "pg"), "-w", *options
        )

    def start_postgres(self) -> None:
        settings = f"-p {self.postgres_port} -c listen_addresses=127.0.0.1 -k {self.folder} " + (
            "-c fsync=off -c full_page_writes=off -c max_connections=200"
        )
        self._pg_ctl("start", "-l", str(self.folder / "postgres.log"), "-o", settings)

    def restart_postgres(self) -> None:
        """A fast shutdown (every connection is cut), then a start."""
        self._pg_ctl("restart", "-m", "fast", "-l", str(self.folder / "postgres.log"))

    def start_redis(self) -> None:
        self.redis = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not self._redis_answers():
            assert time.monotonic() < deadline, "the private Redis did not answer in 30 s"
            time.sleep(0.05)

    def restart_redis(self) -> None:
        """Shut down without saving (its values are gone, as on a Redis without persistence)."""
        self.stop_redis()
        self.start_redis()

    def stop_redis(self) -> None:
        if self.redis is not None and self.redis.poll() is None:
            self.redis.terminate()
            self.redis.wait(timeout=30)

    def _redis_answers(self) -> bool:
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False
        finally:
            client.close()

    def ensure_up(self) -> None:
        """Whatever a test did, both answer afterwards."""
        status = subprocess.run(
            [
                str(self.binaries / "pg_isready"),
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.postgres_port),
            ],
            check=False,
        )
        if status.returncode != 0:
            self.start_postgres()
        if not self._redis_answers():
            self.start_redis()


@contextmanager
def private_services() -> Iterator[PrivateServices]:
    """Start both; stop both and delete their data afterwards. Missing binaries fail under
    CI=true and skip elsewhere."""
    binaries = _postgres_binaries()
    if binaries is None or shutil.which("redis-server") is None:
        message = f"needs a private PostgreSQL and Redis: {HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    # Not below pytest's temporary folder: the `postgres` user cannot enter root's.
    folder = Path(tempfile.mkdtemp(prefix="mlops-private-services-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    services = PrivateServices(folder, free_port(), free_port(), binaries)
    try:
        services._as_owner(
            str(binaries / "initdb"), "-D", str(folder / "pg"), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8",
        )  # fmt: skip
        services.start_postgres()
        services.start_redis()
        yield services
    finally:
        services.stop_redis()
        if (folder / "pg" / "postmaster.pid").exists():
            services._pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(folder, ignore_errors=True)
