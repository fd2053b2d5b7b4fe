"""The checks of a reproduction and its report: pure comparisons of recorded and rebuilt values."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from mlops_flows.logic import training
from mlops_flows.ops.lineage import NOT_RECORDED, CodeVersion, Lineage

SHOWN_DIGEST_CHARS = 12
_LONG_HEX = re.compile(rf"\b([0-9a-f]{{{SHOWN_DIGEST_CHARS}}})[0-9a-f]{{28,}}\b")


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
