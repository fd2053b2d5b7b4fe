"""`mlops demo --loop`: the closed loop in one process, on embedded defaults."""

from __future__ import annotations

import pytest

from mlops_flows.cli.demo import run_loop
from mlops_flows.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]


def test_the_loop_restores_quality_on_recent_data(workspace: Settings) -> None:
    lines: list[str] = []
    story = run_loop(workspace, customers=1500, say=lines.append)
    assert story.retrained_status == "champion"
    assert story.served_version == story.retrained_version != story.baseline_version
    assert "performance" in story.drift_reason
    quality = story.recent_roc_auc
    assert quality[story.retrained_version] > quality[story.baseline_version] + 0.15
    assert any("0 mismatched" in line for line in lines), lines
