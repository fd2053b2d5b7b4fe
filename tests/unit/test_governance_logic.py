"""Pure rules of the governed registry: history entries as tags, who may be restored."""

from __future__ import annotations

import pytest

from mlops_flows import vocabulary
from mlops_flows.registry import governance
from mlops_flows.registry import versions as registry
from mlops_flows.registry.history import Action, Entry
from mlops_flows.vocabulary import Tag
from tests.support import sample_lineage


def test_a_history_entry_survives_its_round_trip_through_tags() -> None:
    entry = Entry(
        Action.PROMOTED,
        "7",
        "alice",
        "holdout reviewed",
        "6",
        "7",
        {"run_id": "abc", "approver": "alice"},
    )

    tags = entry.to_tags()

    assert Entry.from_tags(tags | {"mlflow.runName": "promoted v7"}) == entry
    assert tags["audit.from_version"] == "6"
    assert Entry.from_tags(Entry("registered", "1", "run", "ok").to_tags()).from_version is None


def test_a_long_reason_is_cut_to_the_tag_limit() -> None:
    tags = Entry(Action.APPROVAL_REJECTED, "3", "bob", "x" * 9000).to_tags()
    assert len(tags["audit.reason"]) == 5000


@pytest.mark.parametrize(
    ("tags", "refusal"),
    [
        ({"gates.passed": "false", "status": "rejected"}, "never passed its gates"),
        ({"status": "registering"}, "never passed its gates"),
        ({"gates.passed": "true", "status": "challenger"}, "was never champion"),
        ({"gates.passed": "true", "status": "retired", "promoted_at": "2026-11-01"}, None),
        ({"gates.passed": "true", "status": "rolled_back", "promoted_at": "2026-11-01"}, None),
    ],
)
def test_only_a_version_that_passed_its_gates_and_served_may_be_restored(
    tags: dict[str, str], refusal: str | None
) -> None:
    reason = governance._may_serve("4", tags)
    if refusal is None:
        assert reason is None
    else:
        assert reason is not None
        assert refusal in reason


def test_tagged_versions_read_none_as_absent() -> None:
    assert governance.tagged_version({"previous_champion": "none"}, "previous_champion") is None
    assert governance.tagged_version({}, "previous_champion") is None
    assert governance.tagged_version({"previous_champion": "3"}, "previous_champion") == "3"


def test_the_request_key_changes_with_anything_that_decides_the_model() -> None:
    key = sample_lineage().request_key()
    assert sample_lineage().request_key() == key
    for change in (
        {"training_set_digest": "other"},
        {"code_commit": "1" * 40},
        {"lock_digest": "e" * 64},
        {"seed": 7},
        {"parameters": {"max_iter": 100}},
    ):
        assert sample_lineage(**change).request_key() != key, change


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        (Entry(Action.PROMOTED, "1", "ci", "first", None, "1"), "none -> v1"),
        (Entry(Action.PROMOTED, "3", "ci", "better", "2", "3"), "v2 -> v3"),
        (Entry(Action.ROLLED_BACK, "3", "ci", "broken", "3", "2"), "v3 -> v2"),
        # Requests and decisions carry the proposed move; the champion did not move with them.
        (Entry(Action.APPROVAL_REQUESTED, "3", "ci", "gates passed", "2", "3"), ""),
        (Entry(Action.APPROVED, "3", "ana", "looks right", None, "3"), ""),
        (Entry(Action.PROMOTION_REFUSED, "4", "ci", "stale", "3", None), ""),
        (Entry(Action.REGISTERED, "4", "ci", "trained"), ""),
    ],
)
def test_the_history_shows_a_champion_move_only_where_the_champion_moved(
    entry: Entry, shown: str
) -> None:
    assert entry.champion_move() == shown


def test_every_fact_a_version_can_carry_fits_in_a_dozen_tags() -> None:
    """The version list's row stays short: each searchable fact is a tag, the rest one record."""
    every = {str(tag): f"value of {tag}" for tag in Tag if tag is not Tag.RECORD}
    every[vocabulary.metric_tag("roc_auc")] = "0.8123"
    tags = vocabulary.as_tags(every)

    assert len(tags) == vocabulary.MAX_TAGS
    assert tags[Tag.STATUS] == "value of status"
    assert tags["metric.roc_auc"] == "0.8123"
    assert "promoted_by" not in tags
    assert vocabulary.flatten(tags) == every


def test_a_long_reason_is_cut_in_the_record_and_kept_whole_in_a_searchable_tag() -> None:
    tags = vocabulary.as_tags({Tag.PROMOTION_REASON: "r" * 9000, Tag.GATES_SUMMARY: "s" * 9000})
    facts = vocabulary.flatten(tags)
    assert len(facts[Tag.PROMOTION_REASON]) == vocabulary.RECORD_VALUE_LIMIT
    assert len(facts[Tag.GATES_SUMMARY]) == vocabulary.TAG_LIMIT
    assert all(len(value) <= vocabulary.TAG_LIMIT for value in tags.values())


class _RacingClient:
    """MLflow's SQL store when another process inserted the alias between its read and its
    insert: the first write fails on the unique key, a second one updates."""

    def __init__(self, failure: str) -> None:
        self.failure, self.writes = failure, []

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        from mlflow.exceptions import MlflowException

        self.writes.append((name, alias, version))
        if len(self.writes) == 1:
            raise MlflowException(self.failure)


def test_an_alias_write_that_meets_a_concurrent_first_write_is_made_again() -> None:
    client = _RacingClient("(sqlite3.IntegrityError) UNIQUE constraint failed: alias")
    registry._set_alias(client, "churn", "challenger", "4")  # type: ignore[arg-type]
    assert client.writes == [("churn", "challenger", "4")] * 2


def test_any_other_alias_failure_is_raised() -> None:
    from mlflow.exceptions import MlflowException

    client = _RacingClient("Registered model 'churn' version 9 not found")
    with pytest.raises(MlflowException, match="not found"):
        registry._set_alias(client, "churn", "challenger", "9")  # type: ignore[arg-type]
    assert len(client.writes) == 1


class _VersionWithTags:
    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags


class _TagClient:
    """The two calls `registry.record` makes, on one version held in memory."""

    def __init__(self, tags: dict[str, str]) -> None:
        self.tags, self.writes = dict(tags), []

    def get_model_version(self, name: str, version: str) -> _VersionWithTags:
        return _VersionWithTags(dict(self.tags))

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self.writes.append(key)
        self.tags[key] = value


def test_recording_on_a_version_from_before_the_record_leaves_its_old_tags() -> None:
    """A version registered with 40-odd flat tags is promoted: only the new facts are written,
    and its old tags are neither moved into the record nor changed."""
    old = {f"gate.slice.region.r{index}.reason": "x" * 200 for index in range(40)}
    old |= {"status": "challenger", "mlops.champion_at_training": "3"}
    client = _TagClient(old)
    promoted = {Tag.STATUS: "champion", Tag.PROMOTED_BY: "alice"}
    registry.record(client, "churn", "4", promoted)  # type: ignore[arg-type]

    assert sorted(client.writes) == [Tag.RECORD, Tag.STATUS]
    assert {key: client.tags[key] for key in old if key != Tag.STATUS} == {
        key: value for key, value in old.items() if key != Tag.STATUS
    }
    facts = vocabulary.flatten(client.tags)
    assert (facts[Tag.STATUS], facts[Tag.PROMOTED_BY]) == ("champion", "alice")
    assert facts[Tag.EVALUATED_AGAINST] == "3"  # read under its old name
