"""The machine and code a report was measured on."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]  # the project benchmarked


LIBRARIES = (
    "prefect",
    "mlflow",
    "feast",
    "duckdb",
    "great-expectations",
    "evidently",
    "scikit-learn",
    "pandas",
    "numpy",
    "pyarrow",
    "scipy",
)


def _git(*arguments: str) -> str:
    completed = subprocess.run(
        ["git", *arguments], cwd=CHECKOUT, capture_output=True, text=True, check=False
    )
    return completed.stdout.strip()


def describe() -> dict[str, str]:
    """Cores, memory, Python, key library versions and the git commit."""
    import psutil

    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " (dirty)" if _git("status", "--porcelain", "--untracked-files=no") else ""
    versions = ", ".join(f"{name} {importlib.metadata.version(name)}" for name in LIBRARIES)
    return {
        "cores": f"{os.cpu_count()} logical ({len(os.sched_getaffinity(0))} usable)",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "libraries": versions,
        "git commit": f"{commit}{dirty} on {_git('rev-parse', '--abbrev-ref', 'HEAD')}",
        "load average at start": load_average(),
    }


def load_average() -> str:
    """1, 5 and 15 minute load averages: above the core count, other work shared the CPUs."""
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())
