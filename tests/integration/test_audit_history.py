"""The audit history is tamper-evident: `mlops history --verify` names an edited, removed or
inserted entry, and a champion move the governance key did not sign is not trusted. On a real
MLflow store, written through MLflow's client as anyone with EDIT on the audit experiment could."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mlops_flows.cli.app import app
from mlops_flows.registry import history
from mlops_flows.registry import versions as registry
from mlops_flows.registry.history import Action, Entry
from tests.support import chained_tags, make_key, use_workspace

pytestmark = pytest.mark.integration

MODEL = "churn"


def _forged() -> Entry:
    """A `promoted` entry making v3 champion, stamped now (the newest entry)."""
    return Entry(Action.PROMOTED, "3", "alice", "approved", "2", "3")


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Four signed entries: v1 registered and promoted, v2 registered and promoted."""
    use_workspace(monkeypatch, tmp_path / "workspace")
    monkeypatch.setenv("MLOPS_GOVERNANCE__PUBLIC_KEY", make_key(tmp_path / "governance"))
    monkeypatch.setenv("MLOPS_GOVERNANCE__SIGNING_KEY_FILE", str(tmp_path / "governance"))
    entries = [
        Entry(Action.REGISTERED, "1", "training", "gates passed"),
        Entry(Action.PROMOTED, "1", "training", "first champion", None, "1"),
        Entry(Action.REGISTERED, "2", "training", "gates passed"),
        Entry(Action.PROMOTED, "2", "alice", "approved", "1", "2"),
    ]
    return [history.append(_client(), MODEL, entry) for entry in entries]


def _client() -> Any:
    from mlflow import MlflowClient

    from mlops_flows.settings import Settings

    return MlflowClient(Settings().tracking_uri)


def _verify() -> tuple[int, str]:
    result = CliRunner().invoke(app, ["history", "--verify"], env={"COLUMNS": "250"})
    return result.exit_code, " ".join(result.output.split())


def _forge(tags: dict[str, str]) -> str:
    """A run in the audit experiment with these tags, as an EDIT user would write it."""
    client = _client()
    experiment = client.get_experiment_by_name(history.experiment_name(MODEL)).experiment_id
    run = client.create_run(experiment, tags=tags)
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def test_an_untouched_history_verifies(runs: list[str]) -> None:
    code, output = _verify()
    assert code == 0, output
    assert "verified: 4 entries, hashes and chain intact, signatures checked" in output
    registry.check_governed(_client(), MODEL, "2")  # the last signed move made v2 champion


def _edit(runs: list[str]) -> str:
    _client().set_tag(runs[1], "audit.reason", "nothing to see")
    return runs[1]


def _remove(runs: list[str]) -> str:
    _client().delete_run(runs[1])
    return runs[2]  # the entry that follows it names it


def _insert_unsigned(runs: list[str]) -> str:
    return _forge(chained_tags(_client(), MODEL, _forged()))


def _insert_signed_by_another_key(runs: list[str], tmp_path: Path) -> str:
    from mlops_flows.registry.signing import load_signer

    make_key(tmp_path / "attacker")
    tags = chained_tags(_client(), MODEL, _forged())
    signer = load_signer(tmp_path / "attacker", "the attacker's key")
    tags[history.SIGNATURE] = signer.sign(history.signed_message(tags[history.HASH]))
    return _forge(tags)


@pytest.mark.parametrize(
    ("tamper", "finding"),
    [
        (_edit, "changed after it was written"),
        (_remove, r"follows entry \w{12}, which is not in the history: an entry was removed"),
        (_insert_unsigned, "not signed by the governance key"),
        (_insert_signed_by_another_key, "not signed by the governance key"),
    ],
)
def test_verify_names_the_tampered_entry(
    runs: list[str], tmp_path: Path, tamper: Callable[..., str], finding: str
) -> None:
    arguments = (runs, tmp_path) if tamper is _insert_signed_by_another_key else (runs,)
    tampered = tamper(*arguments)

    code, output = _verify()

    assert code == 4, output
    assert re.search(rf"TAMPERED .*\(run {tampered}\): {finding}", output), output


def test_a_forged_promotion_does_not_make_a_moved_alias_governed(runs: list[str]) -> None:
    """The attack of issue 15: move `champion` by hand and add the `promoted` entry that
    would make the move look governed."""
    _insert_unsigned(runs)
    assert history.read(_client(), MODEL)[-1].to_version == "3"  # the forgery is there

    with pytest.raises(registry.UngovernedChampionError, match=r"made v2 champion"):
        registry.check_governed(_client(), MODEL, "3")
    registry.check_governed(_client(), MODEL, "2")


def test_without_keys_the_chain_is_still_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local profile signs nothing; an edit still breaks the hash."""
    use_workspace(monkeypatch, tmp_path / "workspace")
    first = history.append(_client(), MODEL, Entry(Action.REGISTERED, "1", "t", "passed"))
    history.append(_client(), MODEL, Entry(Action.PROMOTED, "1", "t", "first", None, "1"))
    code, output = _verify()
    assert code == 0, output
    assert "no signature checked (MLOPS_GOVERNANCE__PUBLIC_KEY is not set)" in output

    _client().set_tag(first, "audit.version", "7")
    code, output = _verify()
    assert code == 4, output
    assert f"(run {first}): changed after it was written" in output
