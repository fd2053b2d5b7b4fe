"""The model card: a markdown description of each registered version, rendered from its
facts (mlops_flows.registry.card reads them from MLflow and writes the card)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlops_flows.vocabulary import Status, Tag

# MLflow's SQL registry keeps a version's description in a String(5000) column
# (mlflow/store/model_registry/dbmodels/models.py); MySQL and PostgreSQL refuse longer text.
DESCRIPTION_LIMIT = 5000
# Smaller and smaller gate tables until the card fits; None keeps every row.
_TABLE_ROW_LIMITS: tuple[int | None, ...] = (None, 24, 12, 6, 0)
_VALUES_SHOWN = 12
_TAG_VALUE_SHOWN = 160
_METRICS = ("roc_auc", "log_loss", "brier", "calibration_error", "accuracy", "precision", "recall")
# The facts that record governance: approval, promotion, rejection and rollback.
_GOVERNANCE = frozenset(
    {
        Tag.APPROVAL,
        Tag.APPROVAL_DEADLINE,
        Tag.DECIDED_BY,
        Tag.DECIDED_AT,
        Tag.DECISION_REASON,
        Tag.PROMOTED_AT,
        Tag.PROMOTED_BY,
        Tag.PROMOTION_REASON,
        Tag.PREVIOUS_CHAMPION,
        Tag.ROLLED_BACK_AT,
        Tag.ROLLED_BACK_BY,
        Tag.REDEPLOY_FAILURE,
        Tag.STATUS_REASON,
    }
)

# What holds for every model this library trains and serves; a use case adds its own.
LIBRARY_LIMITS = (
    "Point-in-time features only: a feature missing at scoring time (older than its view's "
    "TTL) makes the service refuse the entity rather than guess.",
    "Slices smaller than the minimum slice size are reported, not gated.",
)


@dataclass(frozen=True)
class CardFacts:
    """Everything a card shows, as read from the registry and the version's run."""

    model_name: str
    version: str
    run_id: str
    version_tags: Mapping[str, str]
    metrics: Mapping[str, float]
    parameters: Mapping[str, str]
    gates: Sequence[Mapping[str, Any]]  # rows of gates.json
    gates_passed: bool | None  # None: the run has no gates.json
    lineage: Mapping[str, Any]  # lineage.json, empty when missing
    features: Sequence[tuple[str, str]]  # (name, type) from the model signature
    values_seen: Mapping[str, Sequence[str]]  # text feature -> values in the training sample
    intended_use: str  # the use case's words (card.json of the run)
    known_limits: Sequence[str]  # the use case's, after the ones every card states


def approval_status(version: str, tags: Mapping[str, str]) -> str:
    """One sentence on where the version stands: champion, pending, rejected, rolled back."""
    status = tags.get(Tag.STATUS, "")
    reason = tags.get(Tag.STATUS_REASON, "")
    if status == Status.CHAMPION:
        when = tags.get(Tag.PROMOTED_AT, "an unrecorded time")
        who = tags.get(Tag.PROMOTED_BY, "an unrecorded actor")
        why = tags.get(Tag.PROMOTION_REASON, "no reason recorded")
        previous = tags.get(Tag.PREVIOUS_CHAMPION, "none")
        return (
            f"**Champion**: serves predictions. Promoted at {when} by {who} ({why}); "
            f"previous champion: {'none' if previous == 'none' else 'v' + previous}."
        )
    if status == Status.CHALLENGER:
        return (
            "**Pending approval**: passed its gates and waits for a person to approve or "
            f"reject it (`mlops approve {version}` / `mlops reject {version}`)."
        )
    if status == Status.REJECTED:
        who = tags.get(Tag.DECIDED_BY, "")
        by = f" by {who}" if who else ""
        return f"**Rejected**{by}: {reason or 'no reason recorded'}. It never serves."
    if status == Status.ROLLED_BACK:
        return f"**Rolled back**: {reason or 'no reason recorded'}. It no longer serves."
    if status == Status.RETIRED:
        return "**Retired**: a later champion replaced it."
    if not status:
        return "**Unknown**: the version has no `status` tag."
    return f"**{status}**" + (f": {reason}" if reason else "")


def render(facts: CardFacts) -> str:
    """The card as markdown, within MLflow's description limit (tables shrink first)."""
    for limit in _TABLE_ROW_LIMITS:
        markdown = _render(facts, limit)
        if len(markdown) <= DESCRIPTION_LIMIT:
            return markdown
    note = f"\n\n… truncated; the full record is in run `{facts.run_id}`."
    return markdown[: DESCRIPTION_LIMIT - len(note)] + note


def _render(facts: CardFacts, row_limit: int | None) -> str:
    sections = [
        f"# {facts.model_name} v{facts.version}",
        f"**Status**: {approval_status(facts.version, facts.version_tags)}",
        "## Intended use\n\n" + facts.intended_use,
        "## Training data\n\n" + _training_data(facts),
        "## Features\n\n" + _features(facts),
        "## Metrics\n\n" + _metrics(facts.metrics),
        "## Metrics by slice (holdout ROC AUC)\n\n" + _slices(facts.gates, row_limit),
        "## Gates\n\n" + _gates(facts.gates, facts.gates_passed, row_limit),
        "## Approval and promotion\n\n" + _governance(facts.version_tags),
        "## Known limits\n\n" + _limits(facts),
    ]
    return "\n\n".join(sections) + "\n"


def _code(value: Any) -> str:
    """A digest or commit in full (so a search finds it), in backticks, or `not recorded`."""
    return f"`{value}`" if value not in (None, "", "not recorded") else "not recorded"


def _training_data(facts: CardFacts) -> str:
    lineage, parameters = facts.lineage, facts.parameters
    start = lineage.get("label_window_start", parameters.get("window_start", "?"))
    end = lineage.get("label_window_end", parameters.get("window_end", "?"))
    code_state = "uncommitted changes" if lineage.get("code_dirty") else "clean"
    suite = "passed" if lineage.get("suite_success") else "failed"
    lines = [
        f"- Labels from {start} to {end}: {lineage.get('training_set_rows', '?')} rows; "
        f"holdout after {parameters.get('holdout_cutoff', '?')} "
        f"({parameters.get('train_rows', '?')} train / {parameters.get('holdout_rows', '?')} "
        "holdout rows)",
        f"- Feature service `{lineage.get('feature_service', parameters.get('feature_service'))}`"
        f", definition sha256 {_code(lineage.get('feature_service_digest'))}",
        f"- Training set sha256 {_code(lineage.get('training_set_digest'))}; label rows sha256 "
        f"{_code(lineage.get('entity_rows_digest'))}",
        f"- Suite `{lineage.get('suite_name', '?')}` sha256 {_code(lineage.get('suite_digest'))}"
        f": {suite}",
        f"- Code {_code(lineage.get('code_commit'))} ({code_state}); uv.lock sha256 "
        f"{_code(lineage.get('lock_digest'))}; seed {lineage.get('seed', '?')}",
        f"- MLflow run `{facts.run_id}`",
    ]
    return "\n".join(lines)


def _features(facts: CardFacts) -> str:
    if not facts.features:
        return "Not recorded (the model has no signature)."
    rows = ["| feature | type | values seen in training |", "| --- | --- | --- |"]
    for name, kind in facts.features:
        rows.append(f"| {name} | {kind} | {_values(facts.values_seen.get(name, ()))} |")
    return "\n".join(rows)


def _values(values: Sequence[str]) -> str:
    shown = ", ".join(values[:_VALUES_SHOWN])
    return shown + (f" (+{len(values) - _VALUES_SHOWN})" if len(values) > _VALUES_SHOWN else "")


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "–"


def _metrics(metrics: Mapping[str, float]) -> str:
    groups = ("holdout", "train", "champion_holdout")
    rows = [
        "| metric | holdout | train | champion on the same holdout |",
        "| --- | --- | --- | --- |",
    ]
    for name in _METRICS:
        if any(f"{group}_{name}" in metrics for group in groups):
            cells = " | ".join(_number(metrics.get(f"{group}_{name}")) for group in groups)
            rows.append(f"| {name} | {cells} |")
    return "\n".join(rows) if len(rows) > 2 else "Not recorded."


def _limited(rows: list[Mapping[str, Any]], limit: int | None) -> tuple[list[Any], int]:
    """Failed rows first when the table must shrink; returns the rows kept and those left."""
    if limit is None or len(rows) <= limit:
        return rows, 0
    ordered = sorted(rows, key=lambda row: bool(row.get("passed")))
    return ordered[:limit], len(rows) - limit


def _slices(gates: Sequence[Mapping[str, Any]], limit: int | None) -> str:
    rows = [row for row in gates if str(row.get("gate", "")).startswith("slice.")]
    if not rows:
        return (
            "Not computed: slices are compared with a champion on the same holdout, and this "
            "version had none to face (or its run has no gates.json)."
        )
    kept, left = _limited(rows, limit)
    table = ["| slice | ROC AUC | threshold | passed |", "| --- | --- | --- | --- |"]
    for row in kept:
        name = str(row["gate"]).removeprefix("slice.")
        table.append(
            f"| {name} | {_number(row.get('observed'))} | {_number(row.get('threshold'))} | "
            f"{_yes_no(row.get('passed'))} |"
        )
    if left:
        table.append(f"\n{left} more slice(s) in gates.json.")
    return "\n".join(table)


def _yes_no(value: Any) -> str:
    return "yes" if value else "**no**"


def _gates(gates: Sequence[Mapping[str, Any]], passed: bool | None, limit: int | None) -> str:
    if passed is None:
        return "Not recorded (the run has no gates.json)."
    rows = [row for row in gates if not str(row.get("gate", "")).startswith("slice.")]
    slices = [row for row in gates if str(row.get("gate", "")).startswith("slice.")]
    failed_slices = sum(1 for row in slices if not row.get("passed"))
    verdict = "all passed" if passed else f"{sum(1 for r in gates if not r.get('passed'))} failed"
    kept, left = _limited(rows, limit)
    table = [
        f"{len(gates)} gates, {verdict}"
        + (f" ({len(slices)} per slice, {failed_slices} failed)" if slices else "")
        + ".",
        "",
        "| gate | passed | observed | threshold | reason |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in kept:
        reason = str(row.get("reason", "")).replace("|", "/")
        table.append(
            f"| {row.get('gate')} | {_yes_no(row.get('passed'))} | {_number(row.get('observed'))}"
            f" | {_number(row.get('threshold'))} | {reason} |"
        )
    if left:
        table.append(f"\n{left} more gate(s) in gates.json.")
    return "\n".join(table)


def _governance(tags: Mapping[str, str]) -> str:
    found = sorted((key, value) for key, value in tags.items() if key in _GOVERNANCE)
    status = tags.get(Tag.STATUS, "none")
    if not found:
        return f"Status tag: `{status}`. No approval or promotion recorded."
    table = [f"Status tag: `{status}`.", "", "| tag | value |", "| --- | --- |"]
    for key, value in found:
        shown = value if len(value) <= _TAG_VALUE_SHOWN else value[: _TAG_VALUE_SHOWN - 1] + "…"
        table.append(f"| {key} | {shown.replace('|', '/')} |")
    return "\n".join(table)


def _limits(facts: CardFacts) -> str:
    lineage = facts.lineage
    start = lineage.get("label_window_start", facts.parameters.get("window_start", "?"))
    end = lineage.get("label_window_end", facts.parameters.get("window_end", "?"))
    lines = [f"- Trained on labels from {start} to {end}; not validated on later periods."]
    if facts.values_seen:
        seen = "; ".join(
            f"{name}: {_values(values)}" for name, values in sorted(facts.values_seen.items())
        )
        lines.append(f"- Not validated outside the values seen in training: {seen}.")
    lines += [f"- {limit}" for limit in (*LIBRARY_LIMITS, *facts.known_limits)]
    return "\n".join(lines)
