"""Rebuild a registered version from its lineage, retrain it, and name whatever changed."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from flows import features, lineage, registry, training
from flows.evaluation import compute_metrics
from flows.lineage import NOT_RECORDED, CodeVersion, Lineage
from flows.settings import Settings
from flows.validation import suite_digest, validate_frame

if TYPE_CHECKING:
    from mlflow import MlflowClient

SHOWN_DIGEST_CHARS = 12
_LONG_HEX = re.compile(rf"\b([0-9a-f]{{{SHOWN_DIGEST_CHARS}}})[0-9a-f]{{28,}}\b")


class ReproductionError(Exception):
    """A version cannot be reproduced at all: it does not exist or its lineage is unreadable."""


@dataclass(frozen=True)
class Check:
    """One comparison of what was recorded at training time with what is found now."""

    name: str
    expected: str
    found: str
    match: bool | None  # None: not recorded at training time, or not comparable
    meaning: str

    @property
    def outcome(self) -> str:
        """`same`, `DIFFERS` or `unknown`."""
        return {True: "same", False: "DIFFERS", None: "unknown"}[self.match]


@dataclass(frozen=True)
class ReproductionReport:
    """Every check of one reproduction; exact when none of them differs."""

    model_name: str
    version: str
    run_id: str
    checks: tuple[Check, ...]

    @property
    def exact(self) -> bool:
        """True when nothing differs: metrics and predictions equal, every digest the same."""
        return all(check.match is not False for check in self.checks)

    @property
    def differences(self) -> tuple[Check, ...]:
        """The checks that differ, in report order."""
        return tuple(check for check in self.checks if check.match is False)

    def verdict(self) -> str:
        """One line: exact, or what differs."""
        where = f"{self.model_name} v{self.version} (run {self.run_id})"
        if self.exact:
            return f"{where} reproduced exactly: same data, features, code, lock and suite."
        named = "; ".join(f"{check.name}: {check.meaning}" for check in self.differences)
        return f"{where} did not reproduce exactly: {named}"

    def to_rows(self) -> list[dict[str, str]]:
        """One row per check, for a table."""
        return [
            {
                "check": check.name,
                "expected": check.expected,
                "found": check.found,
                "outcome": check.outcome,
                "meaning": check.meaning,
            }
            for check in self.checks
        ]

    def to_text(self) -> str:
        """A plain-text table of the checks and the verdict."""
        rows = [{k: k for k in ("check", "expected", "found", "outcome", "meaning")}]
        rows += self.to_rows()
        widths = {key: max(len(row[key]) for row in rows) for key in rows[0]}
        lines = ["  ".join(row[key].ljust(widths[key]) for key in widths).rstrip() for row in rows]
        return "\n".join([*lines, "", self.verdict()])


@dataclass(frozen=True)
class Observed:
    """What the project, the sources and the suite give now, in the terms lineage records."""

    code: CodeVersion
    lock_digest: str
    suite_name: str
    suite_digest: str
    suite_success: bool
    feature_service: str
    feature_service_digest: str
    entity_rows_digest: str
    training_set_digest: str
    training_set_rows: int


@dataclass(frozen=True)
class RecordedVersion:
    """What the registry and the version's run hold about it."""

    run_id: str
    lineage: Lineage
    metrics: dict[str, float]
    parameters: dict[str, str]


def _short(text: str) -> str:
    """Commits and digests cut to their first characters, enough to tell them apart."""
    return _LONG_HEX.sub(r"\1", text)


def _digest_check(name: str, expected: str, found: str, meaning: str) -> Check:
    if expected == NOT_RECORDED:
        return Check(name, expected, _short(found), None, "not recorded for this version")
    match = expected == found
    return Check(name, _short(expected), _short(found), match, "" if match else meaning)


def _code_checks(recorded: Lineage, now: CodeVersion) -> list[Check]:
    commit_match = None if recorded.code_commit == "unknown" else recorded.code_commit == now.commit
    commit = Check(
        "code_commit",
        _short(recorded.code_commit),
        _short(now.commit),
        commit_match,
        {
            None: "not recorded: trained outside a git checkout",
            True: "",
            False: "code changed: the project is at another commit than at training",
        }[commit_match],
    )

    def state(dirty: bool) -> str:
        return "uncommitted changes" if dirty else "clean"

    if recorded.code_dirty and now.dirty:
        dirty_match, meaning = (
            None,
            (
                "uncommitted changes at training and now: the code cannot be proven the same; "
                "metrics and predictions decide"
            ),
        )
    elif recorded.code_dirty == now.dirty:
        dirty_match, meaning = True, ""
    else:
        dirty_match, meaning = False, "code changed: uncommitted changes at one time only"
    dirty = Check("code_dirty", state(recorded.code_dirty), state(now.dirty), dirty_match, meaning)
    return [commit, dirty]


def compare_lineage(recorded: Lineage, observed: Observed) -> list[Check]:
    """Code, lock, suite, features and data: each recorded digest against the one found now."""
    checks = _code_checks(recorded, observed.code)
    checks.append(
        _digest_check(
            "lock_digest",
            recorded.lock_digest,
            observed.lock_digest,
            "lock changed: uv.lock differs, so library versions may differ",
        )
    )
    checks.append(
        _digest_check(
            "suite_digest",
            f"{recorded.suite_name} {recorded.suite_digest}",
            f"{observed.suite_name} {observed.suite_digest}",
            f"suite changed: expectation suite '{recorded.suite_name}' differs",
        )
    )
    suite_match = recorded.suite_success == observed.suite_success
    checks.append(
        Check(
            "suite_result",
            "passed" if recorded.suite_success else "failed",
            "passed" if observed.suite_success else "failed",
            suite_match,
            ""
            if suite_match
            else "data changed: the rebuilt training set meets its suite differently",
        )
    )
    features_differ = recorded.feature_service_digest != observed.feature_service_digest
    checks.append(
        _digest_check(
            "feature_service_digest",
            f"{recorded.feature_service} {recorded.feature_service_digest}",
            f"{observed.feature_service} {observed.feature_service_digest}",
            f"features changed: the definition of feature service '{recorded.feature_service}' "
            "(views, schemas, TTLs, sources, transformations) differs",
        )
    )
    checks.append(
        _digest_check(
            "entity_rows_digest",
            recorded.entity_rows_digest,
            observed.entity_rows_digest,
            "data changed: the label rows of the window (entity keys, timestamps or labels) differ",
        )
    )
    rows_match = recorded.training_set_rows == observed.training_set_rows
    checks.append(
        Check(
            "training_set_rows",
            str(recorded.training_set_rows),
            str(observed.training_set_rows),
            rows_match,
            "" if rows_match else "data changed: the label window holds another number of rows",
        )
    )
    checks.append(
        _digest_check(
            "training_set_digest",
            recorded.training_set_digest,
            observed.training_set_digest,
            _training_set_meaning(recorded, observed, features_differ),
        )
    )
    return checks


def _training_set_meaning(recorded: Lineage, observed: Observed, features_differ: bool) -> str:
    """Why the training set differs, from what else differs."""
    if features_differ:
        return "follows from the changed feature definition"
    if recorded.entity_rows_digest == NOT_RECORDED:
        return (
            "data changed: feature values or label rows differ (label rows were not recorded "
            "apart for this version)"
        )
    if recorded.entity_rows_digest != observed.entity_rows_digest:
        return "data changed: follows from the changed label rows"
    return "data changed: feature values in the sources differ for rows of the window"


def compare_split(parameters: Mapping[str, str], split: training.TimeSplit) -> Check:
    """The holdout cutoff and the rows on each side, as logged and as rebuilt."""
    expected = (
        f"cutoff {parameters.get('holdout_cutoff', NOT_RECORDED)}, "
        f"{parameters.get('train_rows', '?')} train / {parameters.get('holdout_rows', '?')} "
        "holdout rows"
    )
    found = (
        f"cutoff {split.cutoff.isoformat()}, {len(split.train)} train / {len(split.holdout)} "
        "holdout rows"
    )
    match = expected == found
    meaning = "" if match else "data changed: the holdout split differs"
    return Check("holdout_split", expected, found, match, meaning)


def compare_metrics(
    group: str, logged: Mapping[str, float], recomputed: Mapping[str, float]
) -> Check:
    """Recomputed metrics of a group (`holdout`, `train`) against the logged ones, exactly."""
    names = sorted(recomputed)
    differing = [
        f"{name} {logged.get(f'{group}_{name}')!r} -> {recomputed[name]!r}"
        for name in names
        if logged.get(f"{group}_{name}") != recomputed[name]
    ]
    expected = f"{len(names)} logged {group} metrics"
    if not differing:
        return Check(f"{group}_metrics", expected, f"all {len(names)} equal", True, "")
    return Check(
        f"{group}_metrics",
        expected,
        f"{len(differing)} differ: " + "; ".join(differing),
        False,
        "result changed: the retrained model scores differently",
    )


def compare_predictions(
    version: str, registered: npt.NDArray[np.float64] | str, retrained: npt.NDArray[np.float64]
) -> Check:
    """Scores of the registered and the retrained model on the rebuilt holdout, bit for bit;
    `registered` is the reason when the registered model could not score it."""
    expected = f"v{version} scores on {len(retrained)} holdout rows"
    if isinstance(registered, str):
        return Check("predictions", expected, registered, False, "the registered model differs")
    if np.array_equal(registered, retrained):
        return Check("predictions", expected, "bit-identical", True, "")
    if registered.shape != retrained.shape:
        found = f"{registered.shape[0]} registered vs {retrained.shape[0]} retrained scores"
    else:
        differing = int(np.count_nonzero(registered != retrained))
        largest = float(np.max(np.abs(registered - retrained)))
        found = f"{differing} of {len(retrained)} differ, largest by {largest:.3g}"
    return Check("predictions", expected, found, False, "the retrained model differs")


def read_version(client: MlflowClient, name: str, version: str) -> RecordedVersion:
    """The version's run id, lineage, metrics and parameters, or an error naming the versions."""
    from mlflow.exceptions import MlflowException

    try:
        model_version = client.get_model_version(name, version)
    except MlflowException as error:
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        known = known_versions(client, name)
        if not known:
            raise ReproductionError(
                f"Model '{name}' has no registered versions in {client.tracking_uri}. Train one "
                "first (`mlops train`), or set MLOPS_MLFLOW__MODEL_NAME to your model."
            ) from None
        raise ReproductionError(
            f"Model '{name}' has no version '{version}' (versions: {', '.join(known)}). "
            "Pass one of those."
        ) from None
    run_id = str(model_version.run_id)
    run = client.get_run(run_id)
    parameters = dict(run.data.params)
    return RecordedVersion(
        run_id=run_id,
        lineage=_read_lineage(client, run_id, dict(run.data.tags), parameters),
        metrics=dict(run.data.metrics),
        parameters=parameters,
    )


def known_versions(client: MlflowClient, name: str) -> list[str]:
    """Registered versions of a model, oldest first."""
    found = client.search_model_versions(f"name='{name}'")
    return [str(v) for v in sorted(int(model_version.version) for model_version in found)]


def _read_lineage(
    client: MlflowClient, run_id: str, tags: dict[str, str], parameters: dict[str, str]
) -> Lineage:
    """`lineage.json` of the run; the `lineage.*` tags when the document is missing."""
    from mlflow.exceptions import MlflowException

    with tempfile.TemporaryDirectory(prefix="mlops-lineage-") as folder:
        try:
            path = client.download_artifacts(run_id, "lineage.json", folder)
            return Lineage.from_dict(json.loads(Path(path).read_text()))
        except (MlflowException, OSError):
            pass  # an older or partial run: the tags carry the same bundle
    model_fields = training.ModelParameters.__dataclass_fields__
    model_parameters = {
        name: float(value) if name == "learning_rate" else int(value)
        for name, value in parameters.items()
        if name in model_fields
    }
    try:
        return Lineage.from_tags(tags, model_parameters)
    except (TypeError, ValueError) as error:
        raise ReproductionError(
            f"Run {run_id} has neither lineage.json nor complete lineage.* tags ({error}); it "
            "was not logged by the training flow and cannot be reproduced."
        ) from None


def reproduce(settings: Settings, version: str) -> ReproductionReport:
    """Rebuild the version's training set, retrain it and compare everything with its record."""
    from mlflow import MlflowClient

    name, keys = settings.mlflow.model_name, features.keys_of(settings)
    recorded = read_version(MlflowClient(settings.tracking_uri), name, version)
    bundle = recorded.lineage
    frame, definition = rebuild_training_set(settings, bundle, keys)
    suite_path = settings.suite_path(settings.expectations.training_suite)
    validation = validate_frame(frame, suite_path)
    observed = Observed(
        code=lineage.code_version(),
        lock_digest=lineage.file_digest(lineage.LOCK_FILE),
        suite_name=validation.suite_name,
        suite_digest=suite_digest(suite_path),
        suite_success=validation.success,
        feature_service=bundle.feature_service,
        feature_service_digest=definition,
        entity_rows_digest=features.entity_rows_digest(frame, keys),
        training_set_digest=features.frame_digest(frame),
        training_set_rows=len(frame),
    )
    checks = compare_lineage(bundle, observed)
    checks += _retrain_checks(settings, recorded, frame, keys, version)
    return ReproductionReport(name, version, recorded.run_id, tuple(checks))


def rebuild_training_set(
    settings: Settings, recorded: Lineage, keys: features.TrainingSetKeys
) -> tuple[pd.DataFrame, str]:
    """The recorded label window joined with the recorded feature service, as training did;
    returns the frame and the service's definition digest now."""
    store = features.open_store(settings.features.repo_path)
    service = features.get_feature_service(store, recorded.feature_service)
    features.check_sources(store, service)
    labels = features.read_labels(settings.labels_path, keys)
    start = datetime.fromisoformat(recorded.label_window_start)
    end = datetime.fromisoformat(recorded.label_window_end)
    window = features.select_window(labels, keys, start, end)
    frame = features.build_training_set(store, service, window, keys)
    digest = features.definition_digest(features.feature_service_definition(store, service))
    return frame, digest


def holdout_days(parameters: Mapping[str, str], frame: pd.DataFrame, timestamp: str) -> int:
    """The holdout length the run used: last label time minus the logged cutoff, in days."""
    if "holdout_cutoff" not in parameters:
        raise ReproductionError(
            "The run did not log `holdout_cutoff`, so its holdout split cannot be rebuilt."
        )
    cutoff = pd.Timestamp(parameters["holdout_cutoff"])
    span: pd.Timedelta = frame[timestamp].max() - cutoff
    return max(1, round(span / pd.Timedelta(days=1)))


def _retrain_checks(
    settings: Settings,
    recorded: RecordedVersion,
    frame: pd.DataFrame,
    keys: features.TrainingSetKeys,
    version: str,
) -> list[Check]:
    """Split, fit with the logged parameters and seed, score; compare metrics and predictions."""
    days = holdout_days(recorded.parameters, frame, keys.timestamp)
    split = training.split_by_time(frame, keys, days)
    parameters = _model_parameters(recorded.lineage.parameters)
    model = training.fit_model(split.train, keys, parameters)
    columns = training.feature_columns(split.holdout, keys)
    scores = {
        group: training.predict_scores(model, part, columns, parameters.threads)
        for group, part in (("train", split.train), ("holdout", split.holdout))
    }
    checks = [compare_split(recorded.parameters, split)]
    for group, part in (("train", split.train), ("holdout", split.holdout)):
        recomputed = compute_metrics(part[keys.label].to_numpy(), scores[group])
        checks.append(compare_metrics(group, recorded.metrics, recomputed))
    registered_model = registry.load_version(
        settings.tracking_uri, settings.mlflow.model_name, version
    )
    registered: npt.NDArray[np.float64] | str
    try:
        needed = training.model_feature_names(registered_model)
        registered = training.predict_scores(
            registered_model, split.holdout, needed, parameters.threads
        )
    except training.TrainingDataError as error:
        registered = f"the registered model cannot score the rebuilt holdout: {error}"
    checks.append(compare_predictions(version, registered, scores["holdout"]))
    return checks


def _model_parameters(logged: Mapping[str, Any]) -> training.ModelParameters:
    """The fit's parameters as lineage logged them; an error naming any that are missing."""
    try:
        return training.ModelParameters(**logged)
    except TypeError as error:
        raise ReproductionError(
            f"The lineage's model parameters {sorted(logged)} do not fit this code's "
            f"ModelParameters ({error}); the model cannot be retrained as it was."
        ) from None
