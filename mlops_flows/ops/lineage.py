"""What a model version was made from: code, environment, data, features, suite, seed, cost."""

from __future__ import annotations

import hashlib
import json
import resource
import subprocess
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

LOCK_FILE = "uv.lock"  # in the project folder
# The value of a lineage field that versions trained before the field existed do not carry.
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class CodeVersion:
    """The git commit of the project and whether the work tree had uncommitted changes."""

    commit: str
    dirty: bool


def code_version(root: Path) -> CodeVersion:
    """Ask git about the project folder; outside a checkout the commit is 'unknown'."""
    try:
        commit = _git(root, "rev-parse", "HEAD")
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.CalledProcessError):
        return CodeVersion(commit="unknown", dirty=True)
    return CodeVersion(commit=commit, dirty=dirty)


def _git(root: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, check=True, timeout=10
    )
    return completed.stdout.strip()


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, or 'missing'."""
    if not path.is_file():
        return "missing"
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class ResourceMeter:
    """Wall time, CPU time and peak memory of a block of work."""

    started_wall: float = field(default_factory=time.perf_counter)
    started_cpu: float = field(default_factory=time.process_time)
    started_at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    def read(self) -> dict[str, float]:
        # ru_maxrss is the process's peak since it started, in KiB on Linux.
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {
            "cost_wall_seconds": round(time.perf_counter() - self.started_wall, 3),
            "cost_cpu_seconds": round(time.process_time() - self.started_cpu, 3),
            "cost_peak_memory_mb": round(peak_kib / 1024, 1),
        }


@dataclass(frozen=True)
class Lineage:
    """The lineage bundle logged with every run and tagged on every version."""

    code_commit: str
    code_dirty: bool
    lock_digest: str
    feature_service: str
    feature_service_digest: str
    training_set_digest: str
    training_set_rows: int
    label_window_start: str
    label_window_end: str
    suite_name: str
    suite_digest: str
    suite_success: bool
    seed: int
    parameters: dict[str, Any]
    # Digest of the label rows alone (entity key, timestamp, label): tells changed labels apart
    # from changed feature values when the training-set digest differs.
    entity_rows_digest: str = NOT_RECORDED
    # Where the holdout starts: the rows the model is fitted on follow from it.
    holdout_cutoff: str = NOT_RECORDED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def request_key(self) -> str:
        """Digest of everything that decides the model: equal keys train identical models."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> Lineage:
        """Read `lineage.json`; fields added since a version was trained take their defaults."""
        names = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in document.items() if key in names})

    @classmethod
    def from_tags(cls, tags: Mapping[str, str], parameters: Mapping[str, Any]) -> Lineage:
        """Rebuild the bundle from `lineage.*` tags (all text) and the model parameters."""
        values: dict[str, Any] = {
            item.name: tags[f"lineage.{item.name}"]
            for item in fields(cls)
            if f"lineage.{item.name}" in tags
        }
        for name in ("training_set_rows", "seed"):
            if name in values:
                values[name] = int(values[name])
        for name in ("code_dirty", "suite_success"):
            if name in values:
                values[name] = values[name] == "True"  # to_tags writes str(bool)
        return cls(**values, parameters=dict(parameters))

    def to_tags(self) -> dict[str, str]:
        """Flat `lineage.*` tags for the MLflow run and model version."""
        return {
            f"lineage.{name}": str(value)
            for name, value in self.to_dict().items()
            if name != "parameters"
        }
