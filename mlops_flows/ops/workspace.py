"""The workspace: one folder for all local state, so deleting it resets the project."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from mlops_flows.errors import MlopsError


class WorkspaceError(MlopsError):
    """The workspace folder cannot be created or written."""


@dataclass(frozen=True)
class Workspace:
    """Named folders inside the workspace root."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def mlflow(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlflow" / "artifacts"

    @property
    def feast(self) -> Path:
        return self.root / "feast"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions"

    @property
    def serving(self) -> Path:
        return self.root / "serving"

    @property
    def prefect(self) -> Path:
        return self.root / "prefect"

    def ensure(self) -> Workspace:
        """Create the folders and prove they are writable, or say what to do."""
        folders = (
            self.data,
            self.mlflow_artifacts,
            self.feast,
            self.reports,
            self.prefect,
            self.predictions,
            self.serving,
        )
        try:
            # Private to its owner: it holds secrets (tokens, keys), models and predictions. A
            # team shares the production stack's servers, not a workspace folder.
            self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.root.stat().st_mode & 0o077:
                self.root.chmod(0o700)
            for folder in folders:
                folder.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as error:
            raise WorkspaceError(
                f"Workspace {self.root} is not writable ({error.strerror}). Point MLOPS_HOME "
                "at a folder you can write, or fix its permissions."
            ) from error
        return self
