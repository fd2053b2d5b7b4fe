"""Unit tests of lineage pieces (git state, digests, cost meter, tags) and the workspace folders."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from mlops_flows.ops.lineage import (
    NOT_RECORDED,
    CodeVersion,
    Lineage,
    ResourceMeter,
    code_version,
    file_digest,
)
from mlops_flows.ops.workspace import Workspace, WorkspaceError
from tests.support import sample_lineage

GIT_IDENTITY = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]


def git(folder: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(folder), *GIT_IDENTITY, "-c", "commit.gpgsign=false", *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return completed.stdout.strip()


@pytest.fixture
def outside_any_repository(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A folder where git cannot find a repository further up, whatever holds tmp_path."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


@pytest.fixture
def repository(outside_any_repository: Path) -> Path:
    folder = outside_any_repository
    git(folder, "init", "--quiet")
    (folder / "model.py").write_text("SEED = 1\n")
    git(folder, "add", "model.py")
    git(folder, "commit", "--quiet", "-m", "first")
    return folder


def test_code_version_of_a_clean_checkout(repository: Path) -> None:
    version = code_version(repository)
    assert version == CodeVersion(commit=git(repository, "rev-parse", "HEAD"), dirty=False)
    assert re.fullmatch(r"[0-9a-f]{40}", version.commit)


def test_code_version_is_dirty_after_a_tracked_file_changes(repository: Path) -> None:
    (repository / "model.py").write_text("SEED = 2\n")
    assert code_version(repository).dirty is True


def test_code_version_ignores_untracked_files(repository: Path) -> None:
    (repository / "notes.txt").write_text("scratch\n")
    assert code_version(repository).dirty is False


def test_code_version_outside_git_is_unknown(outside_any_repository: Path) -> None:
    assert code_version(outside_any_repository) == CodeVersion(commit="unknown", dirty=True)


def test_file_digest(tmp_path: Path) -> None:
    path = tmp_path / "uv.lock"
    path.write_bytes(b"locked\n")
    assert file_digest(path) == hashlib.sha256(b"locked\n").hexdigest()


@pytest.mark.parametrize("name", ["absent.lock", "."])
def test_file_digest_of_a_missing_file_or_a_folder(tmp_path: Path, name: str) -> None:
    assert file_digest(tmp_path / name) == "missing"


def test_resource_meter_reads_non_negative_costs() -> None:
    reading = ResourceMeter().read()
    assert set(reading) == {"cost_wall_seconds", "cost_cpu_seconds", "cost_peak_memory_mb"}
    assert all(isinstance(value, float) and value >= 0.0 for value in reading.values())
    assert reading["cost_peak_memory_mb"] > 0.0


LINEAGE = sample_lineage()


def test_lineage_tags_are_prefixed_strings_without_parameters() -> None:
    tags = LINEAGE.to_tags()
    expected_names = {f"lineage.{f.name}" for f in dataclasses.fields(Lineage)}
    assert set(tags) == expected_names - {"lineage.parameters"}
    assert all(isinstance(value, str) for value in tags.values())
    assert tags["lineage.training_set_rows"] == "1234"
    assert tags["lineage.suite_success"] == "True"
    assert not any("max_iter" in name or "max_iter" in value for name, value in tags.items())


def test_lineage_dict_keeps_the_parameters() -> None:
    assert LINEAGE.to_dict()["parameters"] == {"max_iter": 200, "learning_rate": 0.08}


def test_lineage_reads_back_from_its_dict() -> None:
    recorded = dataclasses.replace(LINEAGE, entity_rows_digest="e" * 64)
    assert Lineage.from_dict(recorded.to_dict()) == recorded


def test_lineage_of_an_older_run_lacks_the_entity_rows_digest() -> None:
    older = {k: v for k, v in LINEAGE.to_dict().items() if k != "entity_rows_digest"}
    assert Lineage.from_dict({**older, "retired_field": 1}).entity_rows_digest == NOT_RECORDED


def test_lineage_reads_back_from_its_tags_and_the_parameters() -> None:
    recorded = dataclasses.replace(LINEAGE, code_dirty=True, entity_rows_digest="e" * 64)
    assert Lineage.from_tags(recorded.to_tags(), recorded.parameters) == recorded


def test_ensure_creates_every_folder(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "nested" / "workspace")

    assert workspace.ensure() is workspace

    for folder in (
        workspace.data,
        workspace.mlflow,
        workspace.mlflow_artifacts,
        workspace.feast,
        workspace.reports,
        workspace.prefect,
    ):
        assert folder.is_dir(), folder
    assert [p.name for p in workspace.root.iterdir() if p.name.startswith(".")] == []


def test_the_workspace_is_private_to_its_owner(tmp_path: Path) -> None:
    """It holds tokens, keys, models and predictions: no group or other access, also when the
    folder existed with them."""
    (tmp_path / "workspace").mkdir(mode=0o755)
    (tmp_path / "workspace").chmod(0o755)
    workspace = Workspace(tmp_path / "workspace").ensure()
    assert workspace.root.stat().st_mode & 0o777 == 0o700
    fresh = Workspace(tmp_path / "new" / "workspace").ensure()
    assert fresh.root.stat().st_mode & 0o777 == 0o700


def test_ensure_is_idempotent(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "workspace").ensure()
    (workspace.data / "labels.parquet").write_bytes(b"kept")
    workspace.ensure()
    assert (workspace.data / "labels.parquet").read_bytes() == b"kept"


@pytest.mark.parametrize("below", ["file.txt", "file.txt/deeper"])
def test_ensure_below_a_regular_file_says_to_move_mlops_home(tmp_path: Path, below: str) -> None:
    # We run as root, where chmod cannot make a folder unwritable; a file in the path can.
    (tmp_path / "file.txt").write_text("not a folder")
    root = tmp_path / below / "workspace"

    with pytest.raises(WorkspaceError) as raised:
        Workspace(root).ensure()

    message = str(raised.value)
    assert f"Workspace {root} is not writable" in message
    assert "MLOPS_HOME" in message
    assert isinstance(raised.value.__cause__, OSError)
