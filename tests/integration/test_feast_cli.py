"""The Feast CLI works from features/ on the same workspace the flows use."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_flows.examples.churn.simulate import simulate
from mlops_flows.ops.workspace import Workspace
from tests.support import CHECKOUT, SMALL

pytestmark = pytest.mark.integration


def _feast(home: Path, *arguments: str) -> str:
    environment = os.environ | {"MLOPS_HOME": str(home), "FEAST_USAGE": "False"}
    completed = subprocess.run(
        [str(Path(sys.executable).with_name("feast")), *arguments],
        cwd=CHECKOUT / "features",
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return re.sub(r"\x1b\[[0-9;]*m", "", completed.stdout)  # Feast colours its output


def test_feast_apply_and_materialize_incremental_from_the_folder(tmp_path: Path) -> None:
    home = tmp_path / "workspace"
    simulate(SMALL).write(Workspace(home).ensure().data)
    applied = _feast(home, "apply")
    assert "churn_model_v1" in applied
    materialized = _feast(home, "materialize-incremental", "2026-06-30T00:00:00")
    assert "Materializing 2 feature views" in materialized
    assert (home / "feast" / "registry.db").is_file()
    listed = _feast(home, "feature-services", "list")
    assert "churn_model_v1" in listed
