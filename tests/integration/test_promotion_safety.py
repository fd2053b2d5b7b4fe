"""Safe promotion: concurrent retrains of one window promote once, and a retried run neither
registers a second version nor moves `champion` twice."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mlops_flows.adapters import events
from mlops_flows.flows.training_flow import (
    TrainingParameters,
    settle_candidate,
    train_churn_model,
)
from mlops_flows.registry import history
from mlops_flows.registry import versions as registry
from mlops_flows.settings import Settings
from mlops_flows.vocabulary import Tag
from tests.support import (
    CHECKOUT,
    END_OF_DATA,
    champion_of,
    mlflow_client,
    seed_workspace,
    use_workspace,
)

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]
CONCURRENT_RUNS = 4


@pytest.fixture(scope="module")
def safety_home(tmp_path_factory: pytest.TempPathFactory, prefect_server: None) -> Path:
    """A workspace whose v1, trained a week before the end of the data, is champion.
    Later tests train later windows, so no candidate's holdout is in a champion's training rows."""
    home = tmp_path_factory.mktemp("safety") / "workspace"
    with pytest.MonkeyPatch.context() as patch:
        seed_workspace(use_workspace(patch, home))
        first = train_churn_model(
            TrainingParameters(as_of=END_OF_DATA - timedelta(days=7), reason="test-first")
        )
    assert first.status == "champion", first.gate_summary
    return home


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, safety_home: Path) -> Settings:
    return use_workspace(monkeypatch, safety_home)


def _versions(settings: Settings) -> set[str]:
    query = f"name='{settings.mlflow.model_name}'"
    return {str(found.version) for found in mlflow_client(settings).search_model_versions(query)}


def _promotions(settings: Settings, versions: set[str]) -> list[history.Entry]:
    entries = history.read(mlflow_client(settings), settings.mlflow.model_name)
    return [e for e in entries if e.action == history.Action.PROMOTED and e.version in versions]


class CrashOnce:
    """Raise once from the wrapped call, as a worker dying at that point would stop the run."""

    def __init__(self, call: Any, when: Any = lambda *args, **kwargs: True) -> None:
        self.call, self.when, self.crashed = call, when, False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not self.crashed and self.when(*args, **kwargs):
            self.crashed = True
            raise RuntimeError("injected crash")
        return self.call(*args, **kwargs)


@pytest.mark.parametrize(
    ("crash_point", "days_before_end"),
    [("after registration", 4), ("after promotion", 2)],
)
def test_a_retried_run_registers_once_and_moves_the_alias_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, crash_point: str, days_before_end: int
) -> None:
    if crash_point == "after registration":  # the version exists, its gate outcome does not
        crash = CrashOnce(registry.record_outcome)
        monkeypatch.setattr(registry, "record_outcome", crash)
    else:  # the alias moved, the event was not sent
        crash = CrashOnce(events.emit, when=lambda event, *_: event == events.MODEL_PROMOTED)
        monkeypatch.setattr(events, "emit", crash)
    before = _versions(settings)
    retried = train_churn_model.with_options(retries=1, retry_delay_seconds=0)

    outcome = retried(
        TrainingParameters(as_of=END_OF_DATA - timedelta(days=days_before_end), reason="retry")
    )

    assert crash.crashed
    assert _versions(settings) - before == {outcome.version}
    assert outcome.status == "champion", outcome.gate_summary
    assert champion_of(settings) == outcome.version
    assert len(_promotions(settings, {outcome.version})) == 1
    actions = [e.action for e in history.read(mlflow_client(settings), "churn", outcome.version)]
    assert actions == ["registered", "promoted"]


def test_concurrent_retrains_of_one_window_promote_exactly_once(settings: Settings) -> None:
    from prefect.settings import PREFECT_API_URL

    before, champion = (
        _versions(settings),
        champion_of(settings),
    )
    environment = os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value())}
    command = [
        str(Path(sys.executable).with_name("mlops")),
        "train",
        "--as-of",
        END_OF_DATA.isoformat(),
    ]
    runs = [
        subprocess.Popen(
            [*command, "--reason", f"race-{index}"],
            cwd=CHECKOUT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(CONCURRENT_RUNS)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    told = "\n\n".join(outputs)  # a failure's message: what each run printed, whole

    # A run that reaches its duplicate check after another registered trains nothing; the
    # others race to the registry lock, where compare-and-set lets one through.
    new = _versions(settings) - before
    duplicates = [output for output in outputs if "duplicate" in output]
    assert len(new) + len(duplicates) == CONCURRENT_RUNS, told
    statuses = Counter(
        mlflow_client(settings).get_model_version("churn", version).tags["status"]
        for version in new
    )
    assert statuses == +Counter({"champion": 1, "superseded": len(new) - 1}), told
    promoted = _promotions(settings, new)
    assert len(promoted) == 1
    assert promoted[0].from_version == champion
    assert champion_of(settings) == promoted[0].version
    # The losers exit 3 (champion unchanged) and say why; the winner exits 0.
    assert sorted(run.returncode for run in runs) == [0] + [3] * (CONCURRENT_RUNS - 1), told
    refused = history.read(mlflow_client(settings), "churn")
    assert sum(e.action == history.Action.PROMOTION_REFUSED for e in refused) >= len(new) - 1


def _candidate(settings: Settings, evaluated_against: str, request_key: str) -> str:
    """The champion's model registered again as a candidate that passed its gates, compared
    with `evaluated_against` and trained from `request_key`: what a run that lost a race
    registers before it settles."""
    client, name = mlflow_client(settings), settings.mlflow.model_name
    champion = client.get_model_version(name, str(champion_of(settings)))
    tags = {
        Tag.GATES_PASSED: "true",
        "gates.summary": "all gates passed",
        Tag.EVALUATED_AGAINST: evaluated_against,
        Tag.REQUEST_KEY: request_key,
    }
    registered = registry.register_version(
        client, name, str(champion.source), str(champion.run_id), tags
    )
    return str(registered.version)


@pytest.mark.parametrize("lost_to", ["a newer champion", "the same request"])
def test_a_candidate_that_lost_the_race_is_superseded_and_the_champion_stays(
    settings: Settings, lost_to: str
) -> None:
    """The settle step of a run whose compare-and-set fails, in process: the version is
    `superseded` with the reason on its card and in the history, and `champion` does not move.
    (The race itself, between processes, is the test above.)"""
    client, name = mlflow_client(settings), settings.mlflow.model_name
    champion = str(champion_of(settings))
    champion_key = client.get_model_version(name, champion).tags[Tag.REQUEST_KEY]
    if lost_to == "a newer champion":
        version = _candidate(settings, evaluated_against="none", request_key="another request")
        expected = f"was compared with champion vnone, but the champion is now v{champion}"
    else:
        version = _candidate(settings, evaluated_against=champion, request_key=champion_key)
        expected = f"lock and parameters as champion v{champion} (a duplicate request"

    outcome = settle_candidate.fn(settings, version)

    assert (outcome.status, outcome.version) == ("superseded", version)
    assert expected in outcome.gate_summary
    assert champion_of(settings) == champion
    settled = client.get_model_version(name, version)
    assert settled.tags["status"] == "superseded"
    assert "**superseded**" in str(settled.description)
    assert registry.aliases(client, name).get(registry.CHALLENGER) != version
    actions = [e.action for e in history.read(client, name, version)]
    assert actions == ["registered", "promotion_refused"]
