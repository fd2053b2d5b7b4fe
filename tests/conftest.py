"""Test-wide set-up: library side files in a temporary folder, one Prefect test server."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from mlops_flows.settings import Settings
from tests.support import (
    END_OF_DATA,
    EVENTS_STORED_WITHIN_HALF_A_SECOND,
    seed_workspace,
    use_workspace,
)

# Before any library is imported: Prefect reads its home and settings at import time.
_SESSION_FOLDER = Path(tempfile.mkdtemp(prefix="mlops-tests-"))
for _name, _value in Settings(home=_SESSION_FOLDER / "workspace").library_environment().items():
    os.environ[_name] = _value
os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
os.environ.update(EVENTS_STORED_WITHIN_HALF_A_SECOND)
os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = str(_SESSION_FOLDER / "hypothesis")
Path(os.environ["PREFECT_HOME"]).mkdir(parents=True)


# `make test` runs on two xdist workers. Every module is one work unit (`--dist=loadfile`: its
# module-scoped servers start once). The slowest units go first: longest first is what keeps
# both workers busy to the end (`--durations` measures them).
SLOWEST_FIRST = [
    "tests/e2e/test_closed_loop.py",
    "tests/faults/test_service_restart.py",
    "tests/faults/test_worker_killed.py",
    "tests/integration/test_promotion_safety.py",
]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slowest units first, once every other plugin has ordered the tests (a stable sort:
    the order pytest-randomly chose holds within each unit)."""

    def rank(item: pytest.Item) -> int:
        module = item.nodeid.partition("::")[0]
        return SLOWEST_FIRST.index(module) if module in SLOWEST_FIRST else len(SLOWEST_FIRST)

    items.sort(key=rank)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Import the libraries with import-time side effects before any test runs.

    Feast puts "once" warning filters in front of pytest's "error", which would otherwise hold
    for the rest of the first test that imports it; scikit-learn sets KMP_* variables, which
    the unit tests' environment guard would blame on the test.
    """
    import feast  # noqa: F401
    import sklearn  # noqa: F401


@pytest.fixture(scope="module", autouse=True)
def subprocess_coverage(request: pytest.FixtureRequest) -> Iterator[None]:
    """Subprocesses run untraced unless their module is marked `traced_subprocesses`.

    Coverage's tracer costs a traced process about half its CPU again, whatever code it runs.
    A run with one coverage context per test module (issue 16) showed that only the marked
    modules' subprocesses cover lines nothing in process covers; every other subprocess (the
    e2e and fault stacks, workers, trainings in a race) re-covered what the in-process tests
    already had. Autouse and module-scoped, so it holds before any module fixture starts one.
    """
    traced = request.node.get_closest_marker("traced_subprocesses") is not None
    value = None if traced else os.environ.pop("COVERAGE_PROCESS_CONFIG", None)
    yield
    if value is not None:
        os.environ["COVERAGE_PROCESS_CONFIG"] = value


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """A temporary Prefect API for the whole session (it takes ~12 s to start here). Its
    server process runs no library code: started without coverage's start-up variable, it is
    not traced, which would only slow it down."""
    from prefect.testing.utilities import prefect_test_harness

    with contextlib.ExitStack() as harness:
        with mock.patch.dict(os.environ):  # the server's environment is copied at its start
            os.environ.pop("COVERAGE_PROCESS_CONFIG", None)
            harness.enter_context(prefect_test_harness(server_startup_timeout=180))
        yield


@pytest.fixture
def workspace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Settings of an empty workspace in the test's temporary folder."""
    return use_workspace(monkeypatch, tmp_path / "workspace")


@pytest.fixture(scope="session")
def champion_home(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: None
) -> tuple[Path, Any, Any]:
    """A workspace where v1 became champion and v2, trained a week later, faced it."""
    from datetime import timedelta

    from mlops_flows.flows.training_flow import TrainingParameters, train_churn_model

    home = tmp_path_factory.mktemp("champion") / "workspace"
    with pytest.MonkeyPatch.context() as patch:
        seed_workspace(use_workspace(patch, home))
        first = train_churn_model(
            TrainingParameters(as_of=END_OF_DATA - timedelta(days=7), reason="test-first")
        )
        second = train_churn_model(TrainingParameters(reason="test-second"))
    return home, first, second


@pytest.fixture
def champion_workspace(
    monkeypatch: pytest.MonkeyPatch, champion_home: tuple[Path, Any, Any]
) -> Settings:
    """Settings pointing at the shared champion workspace for this test."""
    return use_workspace(monkeypatch, champion_home[0])
