"""Redeploy logic: the smoke sample, the online/offline skew check, the rollback summary."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

SKEW_TOLERANCE = 1e-6
EXAMPLES_SHOWN = 5


@dataclass(frozen=True)
class ScoreMismatch:
    """One customer whose online and offline scores disagree (None: score missing)."""

    customer_id: int
    online: float | None
    offline: float | None

    def describe(self) -> str:
        online = "missing" if self.online is None else f"{self.online:.9f}"
        offline = "missing" if self.offline is None else f"{self.offline:.9f}"
        return f"customer {self.customer_id}: online {online}, offline {offline}"


@dataclass(frozen=True)
class SkewCheck:
    """Online scores of a sample against offline scores of the same customers."""

    passed: bool
    compared: int
    mismatched: int
    max_abs_difference: float | None  # over customers scored on both sides
    tolerance: float
    reason: str
    examples: tuple[ScoreMismatch, ...] = ()

    def to_row(self) -> dict[str, object]:
        return {
            "passed": self.passed,
            "compared": self.compared,
            "mismatched": self.mismatched,
            "max_abs_difference": self.max_abs_difference,
            "tolerance": self.tolerance,
            "reason": self.reason,
        }


def compare_scores(
    online: Mapping[int, float], offline: Mapping[int, float], tolerance: float = SKEW_TOLERANCE
) -> SkewCheck:
    """Pass when both sides scored the same customers and every pair is within `tolerance`."""
    customers = sorted(set(online) | set(offline))
    mismatches: list[ScoreMismatch] = []
    differences: list[float] = []
    for customer in customers:
        online_score, offline_score = online.get(customer), offline.get(customer)
        if online_score is None or offline_score is None:
            mismatches.append(ScoreMismatch(customer, online_score, offline_score))
            continue
        difference = abs(online_score - offline_score)
        if not math.isnan(difference):
            differences.append(difference)
        if math.isnan(difference) or difference > tolerance:
            mismatches.append(ScoreMismatch(customer, online_score, offline_score))
    largest = max(differences) if differences else None
    if not customers:
        reason = "no customer was scored on either side: nothing to compare"
    elif mismatches:
        shown = "; ".join(m.describe() for m in mismatches[:EXAMPLES_SHOWN])
        reason = (
            f"online and offline scores differ for {len(mismatches)} of {len(customers)} "
            f"customers (tolerance {tolerance:g}), e.g. {shown}. The service's online features "
            "or model are not what training and batch scoring use."
        )
    else:
        reason = f"{len(customers)} customers agree within {tolerance:g} (largest {largest:.3g})"
    return SkewCheck(
        passed=bool(customers) and not mismatches,
        compared=len(customers),
        mismatched=len(mismatches),
        max_abs_difference=largest,
        tolerance=tolerance,
        reason=reason,
        examples=tuple(mismatches[:EXAMPLES_SHOWN]),
    )


def sample_customers(population: Sequence[int], size: int, seed: int) -> list[int]:
    """A seeded sample without replacement (all of them when there are fewer), sorted."""
    if size < 1:
        raise ValueError(f"the smoke sample needs at least one customer, got size={size}")
    unique = sorted(set(population))
    if len(unique) <= size:
        return unique
    chosen = np.random.default_rng(seed).choice(len(unique), size=size, replace=False)
    return sorted(unique[index] for index in chosen)


def champion_mismatch(champion: str | None, version: str) -> str | None:
    """Why `version` may not be redeployed as the champion, or None when it may."""
    if champion == version:
        return None
    found = "no version" if champion is None else f"version {champion}"
    return (
        f"parameter `version`={version!r} is not the champion: the alias `champion` points at "
        f"{found}. Redeploy runs after a promotion; pass the promoted version (the event's "
        "`version`), or promote it first."
    )


@dataclass(frozen=True)
class Rollback:
    """What a failed redeploy undid, and what it could not."""

    version: str
    restored_version: str | None
    reason: str
    service_reload_error: str | None = None
    service_version: str | None = None  # what the service serves after the rollback reload

    def summary(self) -> str:
        if self.restored_version is None:
            undone = f"v{self.version} stays champion: there is no previous version to restore"
        else:
            undone = f"champion moved back from v{self.version} to v{self.restored_version}"
        if self.service_reload_error is not None:
            service = f"; the service could not be reloaded: {self.service_reload_error}"
        else:
            service = f"; the service now serves v{self.service_version}"
        return f"Redeploy of v{self.version} failed ({self.reason}); {undone}{service}"
