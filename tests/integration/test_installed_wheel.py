"""The built wheel, installed in a fresh virtual environment outside the checkout, trains the
example in a project folder that is not this checkout: every path comes from the project folder,
none from where the package is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import CHECKOUT

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]
UV = CHECKOUT / ".tools" / "bin" / "uv"  # what `make setup` installs


def _run(*command: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    told = done.stdout + done.stderr
    assert done.returncode == 0, told
    return told


def test_the_installed_wheel_trains_the_example_in_a_project_folder(tmp_path: Path) -> None:
    from prefect.settings import PREFECT_API_URL

    # The wheel, and the locked dependencies it runs with, in an environment of its own.
    dist = tmp_path / "dist"
    _run(UV, "build", "--wheel", "--out-dir", dist, cwd=CHECKOUT)
    (wheel,) = dist.glob("mlops_flows-*.whl")
    requirements = tmp_path / "requirements.txt"
    _run(
        UV, "export", "--frozen", "--no-dev", "--no-emit-project", "-o", requirements, cwd=CHECKOUT
    )
    environment = tmp_path / "venv"
    _run(UV, "venv", "--quiet", "--python", sys.executable, environment, cwd=tmp_path)
    python = environment / "bin" / "python"
    _run(
        UV, "pip", "install", "--quiet", "--python", python, "-r", requirements, wheel, cwd=tmp_path
    )

    # A project: the Feast repository and the suites, nothing else of the checkout.
    project = tmp_path / "project"
    for folder in ("features", "expectations", "usecases"):
        shutil.copytree(CHECKOUT / folder, project / folder, ignore=shutil.ignore_patterns("__py*"))
    env = {
        "PATH": f"{environment / 'bin'}:{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),  # the session's server: no temporary one
    }
    installed = _run(python, "-c", "import mlops_flows; print(mlops_flows.__file__)", cwd=project)
    assert Path(installed.strip()).is_relative_to(environment), installed

    mlops = environment / "bin" / "mlops"
    _run(mlops, "simulate", "--customers", "600", "--days", "84", cwd=project, env=env)
    _run(mlops, "features", "apply", cwd=project, env=env)
    trained = " ".join(_run(mlops, "train", cwd=project, env=env).split())

    assert "model churn v1: champion" in trained, trained
    workspace = project / ".mlops"
    assert (workspace / "mlflow" / "mlflow.db").is_file()
    assert (workspace / "feast" / "registry.db").is_file()
    assert not list(environment.rglob(".mlops")), "state written inside the installed package"
