"""The data-check step every flow shares: validate, and on failure report, emit and stop."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from mlops_flows.adapters import events
from mlops_flows.adapters.validation import DataValidationError, ValidationResult, validate_frame
from mlops_flows.ops.workspace import Workspace
from mlops_flows.settings import Settings


def check_or_stop(
    settings: Settings,
    frame: pd.DataFrame,
    suite: str,
    *,
    what: str,
    consequence: str,
    payload: dict[str, Any],
) -> ValidationResult:
    """Validate `frame` with a suite; on failure store the report, show it as an artifact,
    emit `mlops.data.invalid` (with `payload` added) and raise DataValidationError."""
    result = validate_frame(frame, settings.suite_path(suite))
    if result.success:
        return result
    report = write_report(settings, f"{suite}-validation", result.to_dict())
    create_markdown_artifact(
        key="data-invalid",
        markdown=f"## {what} failed `{result.suite_name}`\n\n```\n{result.summary()}\n```\n"
        f"Report: `{report}`. {consequence}",
        description="Failed data checks",
    )
    events.emit(
        events.DATA_INVALID,
        settings.mlflow.model_name,
        {
            "suite": result.suite_name,
            "failed": [failure.describe() for failure in result.failed],
            "report": str(report),
            **payload,
        },
    )
    raise DataValidationError(result)


def write_report(settings: Settings, kind: str, document: dict[str, Any]) -> Path:
    """A JSON report in the workspace's reports folder, named by kind, time and flow run."""
    folder = Workspace(settings.home_resolved).reports
    folder.mkdir(parents=True, exist_ok=True)
    run = flow_run.get_id() or "local"
    path = folder / f"{kind}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{run}.json"
    path.write_text(json.dumps(document, indent=2, default=str))
    return path
