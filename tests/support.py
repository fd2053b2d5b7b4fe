"""Helpers that build real workspaces: simulated sources, an applied Feast repo, MLflow."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from mlops_flows.examples.churn.simulate import SimulatedData, SimulationSpec, simulate
from mlops_flows.ops.workspace import Workspace
from mlops_flows.settings import Settings


def unset(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Remove a variable for one test; monkeypatch.delenv alone records nothing when it is
    absent, so a value the code under test sets later would outlive the test."""
    monkeypatch.setenv(name, "")
    monkeypatch.delenv(name)


def make_key(path: Path) -> str:
    """An unencrypted OpenSSH Ed25519 key at `path` (mode 0600), as `ssh-keygen -t ed25519
    -N ''` writes it; its public line."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    path.chmod(0o600)
    return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


@contextmanager
def mlflow_login(username: str, password: str) -> Iterator[None]:
    """MLflow's client logs in as this user inside the block (it reads the environment on each
    request)."""
    login = {"MLFLOW_TRACKING_USERNAME": username, "MLFLOW_TRACKING_PASSWORD": password}
    with mock.patch.dict(os.environ, login):
        yield


def add_mlflow_user(uri: str, admin: tuple[str, str], username: str) -> str:
    """Create a user on an MLflow server with basic auth, as its admin; the user's password."""
    import httpx

    password = secrets.token_hex(16)
    account = {"username": username, "password": password}
    httpx.post(f"{uri}/api/2.0/mlflow/users/create", json=account, auth=admin).raise_for_status()
    return password


def chained_tags(client: Any, model: str, entry: Any) -> dict[str, str]:
    """An audit entry's tags with a correct `previous` and hash, as anyone with EDIT on the
    audit experiment could write them: all but the governance key's signature."""
    from mlops_flows.registry import history

    tags = entry.to_tags()
    tags[history.PREVIOUS] = ",".join(history.heads(history.read_stored(client, model)))
    tags[history.HASH] = history.content_digest(tags)
    return dict(tags)


def use_workspace(monkeypatch: pytest.MonkeyPatch, home: Path) -> Settings:
    """Point every setting and library at a fresh workspace folder."""
    monkeypatch.setenv("MLOPS_HOME", str(home))
    settings = Settings()
    for name in ("MLOPS_HOME", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(name, settings.library_environment()[name])
    return settings


# This checkout: the project the tests run the library against (its features/, expectations/,
# prefect.yaml and uv.lock).
CHECKOUT = Path(__file__).resolve().parents[1]
END = date(2026, 6, 30)
END_OF_DATA = datetime(2026, 6, 30, 23, 59, tzinfo=UTC)
SMALL = SimulationSpec(customers=600, days=84, end=END)


def seed_workspace(settings: Settings, spec: SimulationSpec = SMALL) -> SimulatedData:
    """Write simulated sources into the workspace and apply the Feast repository."""
    from mlops_flows.adapters import features

    workspace = Workspace(settings.home_resolved).ensure()
    data = simulate(spec)
    data.write(workspace.data)
    store = features.open_store(settings.features.repo_path)
    features.apply_repository(store, settings.features.repo_path)
    return data


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


def snapshot(settings: Settings) -> dict[str, Any]:
    """Registry versions with their tags, aliases, and the Feast registry and online store."""
    from mlflow import MlflowClient

    from mlops_flows.registry import versions as registry

    client = MlflowClient(settings.tracking_uri)
    name = settings.mlflow.model_name
    versions = {
        str(v.version): dict(client.get_model_version(name, v.version).tags)
        for v in client.search_model_versions(f"name='{name}'")
    }
    feast = Workspace(settings.home_resolved).feast
    return {
        "aliases": registry.aliases(client, name),
        "versions": versions,
        "feast_registry": _digest(feast / "registry.db"),
        "online_store": _digest(feast / "online_store.db"),
    }


# Every Prefect server the tests start (the session's, the stacks'): its event persister writes
# what it received every half second instead of every 5 s, so that a test waiting for an event
# (`wait_for_event`, `Stack.events`) waits for the event, not for the next flush.
EVENTS_STORED_WITHIN_HALF_A_SECOND = {
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5"
}


def wait_for_event(name: str, since: datetime, timeout: float = 30.0) -> list[Any]:
    """Events of that name the Prefect API has stored since `since`, polled until one arrives."""
    import time

    from prefect import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    query = EventFilter(
        event=EventNameFilter(name=[name]), occurred=EventOccurredFilter(since=since)
    )
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            found = client.read_events(filter=query, limit=50).events
            if found or time.monotonic() > deadline:
                return list(found)
            time.sleep(0.5)


def mlflow_client(settings: Settings) -> Any:
    """A registry client for the workspace the settings point at."""
    from mlflow import MlflowClient

    return MlflowClient(settings.tracking_uri)


def champion_of(settings: Settings) -> str | None:
    """The version `champion` points at in the workspace's registry."""
    from mlops_flows.registry import versions as registry

    return registry.champion_version(mlflow_client(settings), settings.mlflow.model_name)


def sample_lineage(**changes: Any) -> Any:
    """A complete lineage bundle for pure tests; `changes` replace fields."""
    import dataclasses

    from mlops_flows.ops.lineage import Lineage

    bundle = Lineage(
        code_commit="0" * 40,
        code_dirty=False,
        lock_digest="a" * 64,
        feature_service="churn_model_v1",
        feature_service_digest="b" * 64,
        training_set_digest="c" * 64,
        training_set_rows=1234,
        label_window_start="2026-04-07T06:00:00+00:00",
        label_window_end="2026-06-30T06:00:00+00:00",
        suite_name="training_set",
        suite_digest="d" * 64,
        suite_success=True,
        seed=42,
        parameters={"max_iter": 200, "learning_rate": 0.08},
    )
    return dataclasses.replace(bundle, **changes)


def train_two_champions(patch: pytest.MonkeyPatch, home: Path) -> tuple[Any, Any]:
    """Data up to today (redeploys materialize now); v1 trained a week before v2, which
    replaces it as champion."""
    from datetime import timedelta

    from mlops_flows.flows.training_flow import TrainingParameters, train_churn_model

    spec = SimulationSpec(**{**vars(SMALL), "end": datetime.now(UTC).date()})
    data = seed_workspace(use_workspace(patch, home), spec)
    last_label = data.labels["event_timestamp"].max().to_pydatetime()
    first = train_churn_model(
        TrainingParameters(as_of=last_label - timedelta(days=7), reason="test-first")
    )
    second = train_churn_model(TrainingParameters(reason="test-second"))
    return first, second


def promote_for_set_up(client: Any, name: str, version: str, reason: str = "test set-up") -> None:
    """Move `champion` as governance does, with its audit entry, without the gates' checks:
    a test's set-up (a champion the history did not make champion is never used)."""
    from mlops_flows.registry import history
    from mlops_flows.registry import versions as registry

    previous = registry.promote(client, name, version, "test-set-up", reason)
    entry = history.Entry(
        history.Action.PROMOTED, version, "test-set-up", reason, previous, version
    )
    history.append(client, name, entry)


# `mlops` in this process, as a terminal shows it: how an expected failure ends for its user.

WIDE_TERMINAL = 10_000  # columns: Rich wraps no line of the CLI's, however long its message


@contextmanager
def _prefect_console_among_the_cli_output() -> Iterator[None]:
    """Prefect's console handler writes to the stderr of the moment Prefect set up its logging
    (pytest's), where a terminal shows its lines among the CLI's: send them to the stderr of
    the moment for the block, so that the runner captures them with the CLI's own."""
    import io
    import logging
    import sys

    class StderrOfTheMoment(io.TextIOBase):
        """Writes to whatever `sys.stderr` is when written to: in `CliRunner.invoke`, the
        stream the runner captures."""

        def write(self, text: str) -> int:
            return sys.stderr.write(text)

        def flush(self) -> None:
            sys.stderr.flush()

    handlers: list[Any] = [
        handler
        for handler in logging.getLogger().handlers
        if type(handler).__name__ == "PrefectConsoleHandler"
    ]
    saved = [(handler, handler.stream, handler.console.file) for handler in handlers]
    stream = StderrOfTheMoment()
    for handler in handlers:
        handler.stream = stream
        handler.console.file = stream
    try:
        yield
    finally:
        for handler, old_stream, old_file in saved:
            handler.stream = old_stream
            handler.console.file = old_file


def run_mlops(*arguments: str) -> Any:
    """`mlops ARGUMENTS` in this process (typer's CliRunner): its `.output` is what a terminal
    shows, stdout, stderr and Prefect's console lines in order, no line wrapped. The variables
    the command exports for its libraries are undone afterwards, as a process's end would."""
    from typer.testing import CliRunner

    from mlops_flows.cli.app import app
    from mlops_flows.cli.common import console, output

    # The consoles' width, not COLUMNS: a console takes COLUMNS once, when it is created, and
    # under pytest-xdist a worker's environment has COLUMNS at import time.
    with (
        mock.patch.dict(os.environ),
        mock.patch.object(console, "_width", WIDE_TERMINAL),
        mock.patch.object(output, "_width", WIDE_TERMINAL),
        _prefect_console_among_the_cli_output(),
    ):
        return CliRunner().invoke(app, list(arguments))


def assert_one_line_failure(result: Any, expected: str, code: int = 1) -> str:
    """An expected failure as its user sees it (`result` from `run_mlops`): exit `code`, not a
    crash; no traceback anywhere in the output; and the output ends on the CLI's own one-line
    error (`error in <step>: ...` or `error: ...`), which the regular expression `expected`
    matches. That line, for further checks of the message."""
    import re
    import traceback

    told: str = result.output
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):
        crash = "".join(traceback.format_exception(*result.exc_info))
        raise AssertionError(f"`mlops` crashed: a bug, not an expected failure\n{crash}{told}")
    assert result.exit_code == code, told
    assert "Traceback" not in told, told
    lines = [line for line in told.splitlines() if line.strip()]
    assert lines, "`mlops` printed nothing"
    last = lines[-1]
    assert last.startswith("error"), f"the output does not end on the CLI's error line:\n{told}"
    assert re.search(expected, last), f"{expected!r} not in the last line {last!r}:\n{told}"
    return last
