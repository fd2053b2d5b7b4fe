"""Truncated, empty or foreign parquet files where Feast sources and labels should be.

Each run must stop with an error naming the file (not a pyarrow traceback), register nothing,
write no predictions and leave the champion, the Feast registry and the online store as they
were. The file's exact bytes are put back afterwards. Training goes through `mlops train`,
which must end on its one error line, with no traceback; batch scoring has no command.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops_flows.examples.churn.simulate import ACTIVITY_FILE, LABELS_FILE, PROFILE_FILE
from mlops_flows.ops.workspace import Workspace
from mlops_flows.settings import Settings
from tests.support import END_OF_DATA, assert_one_line_failure, run_mlops, snapshot

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("prefect_server")]


def truncate(data: bytes) -> bytes:
    """Half a file: a copy or an upload cut off (no parquet footer)."""
    return data[: len(data) // 2]


def empty(data: bytes) -> bytes:
    """A zero-byte file: the writer died before its first byte."""
    return b""


def foreign(data: bytes) -> bytes:
    """Another format under the parquet name (an export that wrote CSV)."""
    return b"customer_id,event_timestamp\n1000,2026-06-01\n"


CORRUPTIONS = [truncate, empty, foreign]


@pytest.fixture
def unchanged(champion_workspace: Settings) -> Iterator[Settings]:
    """Registry, aliases, Feast registry, online store and predictions as before the test."""
    predictions = Workspace(champion_workspace.home_resolved).predictions
    before = snapshot(champion_workspace), sorted(predictions.glob("*"))
    yield champion_workspace
    assert (snapshot(champion_workspace), sorted(predictions.glob("*"))) == before


@pytest.fixture
def corrupt(unchanged: Settings) -> Iterator[Callable[[str, Callable[[bytes], bytes]], Path]]:
    """Corrupt one data file of the workspace; its exact bytes are restored afterwards."""
    saved: dict[Path, bytes] = {}

    def apply(name: str, corruption: Callable[[bytes], bytes]) -> Path:
        path = Workspace(unchanged.home_resolved).data / name
        saved.setdefault(path, path.read_bytes())
        path.write_bytes(corruption(saved[path]))
        return path

    yield apply
    for path, data in saved.items():
        path.write_bytes(data)


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_training_on_a_broken_source_names_the_file(
    corrupt: Callable[[str, Callable[[bytes], bytes]], Path],
    corruption: Callable[[bytes], bytes],
) -> None:
    path = corrupt(ACTIVITY_FILE, corruption)
    result = run_mlops("train", "--reason", "test-corrupt-source")
    message = assert_one_line_failure(result, r"^error in training flow: Source file ")
    assert f"Source file {path} of feature view 'customer_activity' is not readable parquet" in (
        message
    )
    assert "truncated, corrupt or still being written: write it again" in message


@pytest.mark.parametrize("corruption", CORRUPTIONS)
def test_training_on_broken_labels_names_the_file(
    corrupt: Callable[[str, Callable[[bytes], bytes]], Path],
    corruption: Callable[[bytes], bytes],
) -> None:
    path = corrupt(LABELS_FILE, corruption)
    result = run_mlops("train", "--reason", "test-corrupt-labels")
    message = assert_one_line_failure(result, r"^error in training flow: Label file ")
    assert f"Label file {path} is not readable parquet (ArrowInvalid" in message
    assert "write it again" in message


@pytest.mark.parametrize("name", [PROFILE_FILE, ACTIVITY_FILE])
def test_batch_scoring_on_a_broken_source_names_the_file(
    corrupt: Callable[[str, Callable[[bytes], bytes]], Path], name: str
) -> None:
    path = corrupt(name, truncate)
    result = run_mlops("score", "--as-of", END_OF_DATA.isoformat())
    told = assert_one_line_failure(result, r"^error in batch scoring flow: ")
    assert f"Source file {path} of feature view" in told
    assert "is not readable parquet" in told
