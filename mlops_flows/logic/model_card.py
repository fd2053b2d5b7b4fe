"""The model card: a markdown description of each registered version, kept in the registry."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow's SQL registry keeps a version's description in a String(5000) column
# (mlflow/store/model_registry/dbmodels/models.py); MySQL and PostgreSQL refuse longer text.
DESCRIPTION_LIMIT = 5000
# Smaller and smaller gate tables until the card fits; None keeps every row.
_TABLE_ROW_LIMITS: tuple[int | None, ...] = (None, 24, 12, 6, 0)
_VALUES_SHOWN = 12
_TAG_VALUE_SHOWN = 160
_METRICS = ("roc_auc", "log_loss", "brier", "calibration_error", "accuracy", "precision", "recall")
# Version tags that record governance: approval, promotion, rejection and rollback.
_GOVERNANCE_PREFIXES = (
    "approval",
    "approved",
    "rejected",
    "promot",
    "previous_champion",
    "rollback",
    "rolled_back",
    "redeploy",
    "status_reason",
)

INTENDED_USE = (
    "Ranks current subscribers of the service by their probability of churning within the next "
    "label period, so that retention offers reach the likeliest leavers first. Scores are "
    "probabilities (calibration is gated); use them to rank or with a threshold chosen for the "
    "campaign's cost. Not for decisions about individuals without human review, nor for "
    "pricing or credit."
)
KNOWN_LIMITS = (
    "Trained on the simulated churn example: real customer behaviour will differ.",
    "Point-in-time features only: a feature missing at scoring time (older than its view's "
    "TTL) makes the service refuse the customer rather than guess.",
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


def approval_status(version: str, tags: Mapping[str, str]) -> str:
    """One sentence on where the version stands: champion, pending, rejected, rolled back."""
    status = tags.get("status", "")
    reason = tags.get("status_reason", "")
    if status == "champion":
        when = tags.get("promoted_at", "an unrecorded time")
        who = tags.get("promoted_by", "an unrecorded actor")
        why = tags.get("promotion_reason", "no reason recorded")
        previous = tags.get("previous_champion", "none")
        return (
            f"**Champion**: serves predictions. Promoted at {when} by {who} ({why}); "
            f"previous champion: {'none' if previous == 'none' else 'v' + previous}."
        )
    if status == "challenger":
        return (
            "**Pending approval**: passed its gates and waits for a person to approve or "
            f"reject it (`mlops approve {version}` / `mlops reject {version}`)."
        )
    if status == "approved":
        who = tags.get("approved_by", tags.get("approval_by", "an unrecorded person"))
        return f"**Approved** by {who}; not serving until `champion` points at it."
    if status == "rejected":
        who = tags.get("rejected_by", tags.get("approval_by", ""))
        by = f" by {who}" if who else ""
        return f"**Rejected**{by}: {reason or 'no reason recorded'}. It never serves."
    if status == "rolled_back":
        why = tags.get("rollback_reason", tags.get("rolled_back_reason", reason))
        return f"**Rolled back**: {why or 'no reason recorded'}. It no longer serves."
    if status == "retired":
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
        "## Intended use\n\n" + INTENDED_USE,
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
    found = sorted(
        (key, value) for key, value in tags.items() if key.startswith(_GOVERNANCE_PREFIXES)
    )
    status = tags.get("status", "none")
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
    lines += [f"- {limit}" for limit in KNOWN_LIMITS]
    return "\n".join(lines)


def refresh(client: MlflowClient, name: str, version: str) -> str:
    """Read the version's record from MLflow, write its card as the version's description,
    and return the markdown; no model is loaded."""
    model_version = client.get_model_version(name, version)
    run_id = str(model_version.run_id)
    run = client.get_run(run_id)
    with tempfile.TemporaryDirectory(prefix="mlops-card-") as folder:
        gates = _document(client, run_id, "gates.json", Path(folder))
        lineage = _document(client, run_id, "lineage.json", Path(folder))
        features = _signature(client, str(model_version.source), Path(folder))
        text_features = [feature for feature, kind in features if kind == "string"]
        values_seen = _values_seen(client, run_id, text_features, Path(folder))
    facts = CardFacts(
        model_name=name,
        version=str(version),
        run_id=run_id,
        version_tags=dict(model_version.tags),
        metrics=dict(run.data.metrics),
        parameters=dict(run.data.params),
        gates=list(gates.get("results", [])) if gates else [],
        gates_passed=bool(gates["passed"]) if gates and "passed" in gates else None,
        lineage=lineage or {},
        features=features,
        values_seen=values_seen,
    )
    markdown = render(facts)
    client.update_model_version(name, version, description=markdown)
    return markdown


def _document(client: MlflowClient, run_id: str, path: str, folder: Path) -> dict[str, Any] | None:
    """A JSON artifact of the run, or None when the run has none."""
    from mlflow.exceptions import MlflowException

    try:
        local = client.download_artifacts(run_id, path, str(folder))
    except (MlflowException, OSError):
        return None
    document = json.loads(Path(local).read_text())
    return document if isinstance(document, dict) else None


def _signature(client: MlflowClient, source: str, folder: Path) -> list[tuple[str, str]]:
    """(name, type) of each model input, from the MLmodel file alone; empty without one."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    # MLflow 3 registers a logged model (`models:/m-<id>`), whose files sit at its own location.
    try:
        if source.startswith("models:/m-"):
            location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
        else:
            location = source
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{location.rstrip('/')}/MLmodel",
            dst_path=str(folder / "model"),
            tracking_uri=client.tracking_uri,
        )
    except (MlflowException, OSError):
        return []
    signature = Model.load(path).signature
    if signature is None:
        return []
    return [(str(item["name"]), str(item["type"])) for item in signature.inputs.to_dict()]


def _values_seen(
    client: MlflowClient, run_id: str, columns: list[str], folder: Path
) -> dict[str, list[str]]:
    """Values of text features in the run's seeded training sample (the drift reference)."""
    import pandas as pd
    from mlflow.exceptions import MlflowException

    if not columns:
        return {}
    try:
        local = client.download_artifacts(run_id, "reference/reference.parquet", str(folder))
    except (MlflowException, OSError):
        return {}
    sample = pd.read_parquet(local, columns=columns)
    return {column: sorted(map(str, sample[column].dropna().unique())) for column in columns}
