"""Seeded, deterministic simulator of the churn example: Feast sources and labels as parquet."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_flows.errors import MlopsError
from mlops_flows.examples.churn.scenarios import Corruption, Scenario

PLANS = ("basic", "standard", "premium")
REGIONS = ("north", "south", "east", "west")
PROFILE_EVERY_DAYS = 28
LABEL_HOUR = 6  # labels are taken at 06:00, after the day's feature snapshot at 00:00

PROFILE_FILE = "customer_profile.parquet"
ACTIVITY_FILE = "customer_activity.parquet"
LABELS_FILE = "labels.parquet"


class SimulationSpecError(MlopsError, ValueError):
    """A simulation cannot be made as specified."""


@dataclass(frozen=True)
class SimulationSpec:
    """Size, time span and scenario of one simulated data set."""

    customers: int = 3000
    days: int = 140
    end: date = field(default_factory=lambda: datetime.now(UTC).date())
    label_every_days: int = 7
    activity_every_days: int = 1
    scenario: Scenario = Scenario.BASELINE
    drift_start_day: int | None = None  # default: the last quarter of the span
    corruptions: tuple[Corruption, ...] = ()  # extra corruptions on top of the scenario
    seed: int = 7

    def __post_init__(self) -> None:
        if self.customers < 1 or self.days < 2 * self.label_every_days:
            raise SimulationSpecError(
                f"need at least 1 customer and {2 * self.label_every_days} days, "
                f"got customers={self.customers}, days={self.days}"
            )
        if self.label_every_days % self.activity_every_days:
            raise SimulationSpecError(
                "label_every_days must be a multiple of activity_every_days so that every "
                f"label has a same-day feature snapshot (got {self.label_every_days} and "
                f"{self.activity_every_days})"
            )

    @property
    def start(self) -> datetime:
        end = datetime(self.end.year, self.end.month, self.end.day, tzinfo=UTC)
        return end - timedelta(days=self.days - 1)

    @property
    def drift_day(self) -> int:
        return self.drift_start_day if self.drift_start_day is not None else self.days * 3 // 4

    def day_timestamp(self, day: int, hour: int = 0) -> datetime:
        return self.start + timedelta(days=day, hours=hour)


@dataclass(frozen=True)
class SimulatedData:
    """The three tables of a simulation, in the shape the Feast sources read."""

    profile: pd.DataFrame
    activity: pd.DataFrame
    labels: pd.DataFrame

    def write(self, folder: Path) -> dict[str, Path]:
        """Write the tables as parquet into `folder`; return the paths by table name."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {
            "profile": folder / PROFILE_FILE,
            "activity": folder / ACTIVITY_FILE,
            "labels": folder / LABELS_FILE,
        }
        for name, path in paths.items():
            frame: pd.DataFrame = getattr(self, name)
            frame.to_parquet(path, index=False)
        return paths


def simulate(spec: SimulationSpec) -> SimulatedData:
    """Generate profile snapshots, daily activity and weekly churn labels."""
    rng = np.random.default_rng(spec.seed)
    customers = _customers(spec, rng)
    profile = _profile(spec, customers)
    activity = _activity(spec, customers, rng)
    labels = _labels(spec, customers, profile, activity, rng)
    data = SimulatedData(profile=profile, activity=activity, labels=labels)
    corruptions = set(spec.corruptions)
    if spec.scenario is Scenario.BROKEN:
        corruptions |= set(Corruption)
    return corrupt(data, sorted(corruptions), rng) if corruptions else data


def _customers(spec: SimulationSpec, rng: np.random.Generator) -> pd.DataFrame:
    n = spec.customers
    plan = rng.choice(len(PLANS), size=n, p=[0.45, 0.35, 0.20])
    base_charge = np.array([29.0, 59.0, 99.0])[plan] + rng.normal(0.0, 8.0, n)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + n, dtype="int64"),
            "plan": plan,
            "region": rng.integers(0, len(REGIONS), n),
            "tenure0": rng.integers(0, 120, n),
            "charge": np.clip(base_charge, 5.0, 300.0),
            "engagement": rng.lognormal(0.0, 0.5, n),
        }
    )


def _snapshot_days(spec: SimulationSpec, every: int) -> np.ndarray:
    return np.arange(0, spec.days, every)


def _timestamps(spec: SimulationSpec, days: np.ndarray, hour: int = 0) -> pd.Series:
    stamps = pd.Timestamp(spec.start) + pd.to_timedelta(days, unit="D") + pd.Timedelta(hours=hour)
    return pd.Series(stamps, dtype="datetime64[ns, UTC]")


def _drifted(spec: SimulationSpec, days: np.ndarray, scenario: Scenario) -> np.ndarray:
    return (spec.scenario is scenario) & (days >= spec.drift_day)


def _profile(spec: SimulationSpec, customers: pd.DataFrame) -> pd.DataFrame:
    days = _snapshot_days(spec, PROFILE_EVERY_DAYS)
    n, k = len(customers), len(days)
    day = np.tile(days, n)
    covariate = _drifted(spec, day, Scenario.COVARIATE_DRIFT)
    stamps = _timestamps(spec, day)
    return pd.DataFrame(
        {
            "customer_id": np.repeat(customers["customer_id"].to_numpy(), k),
            "event_timestamp": stamps,
            "created": stamps + pd.Timedelta(minutes=5),
            "plan": np.array(PLANS)[np.repeat(customers["plan"].to_numpy(), k)],
            "region": np.array(REGIONS)[np.repeat(customers["region"].to_numpy(), k)],
            "tenure_months": (np.repeat(customers["tenure0"].to_numpy(), k) + day // 30).astype(
                "int64"
            ),
            "monthly_charge": np.round(
                np.repeat(customers["charge"].to_numpy(), k) + np.where(covariate, 18.0, 0.0), 2
            ),
        }
    )


def _activity(
    spec: SimulationSpec, customers: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    days = _snapshot_days(spec, spec.activity_every_days)
    n, k = len(customers), len(days)
    day = np.tile(days, n)
    engagement = np.repeat(customers["engagement"].to_numpy(), k)
    engagement = np.where(
        _drifted(spec, day, Scenario.COVARIATE_DRIFT), engagement * 0.55, engagement
    )
    sessions = np.minimum(rng.poisson(3.0 * engagement), 200)
    minutes = np.round(sessions * rng.gamma(2.0, 12.0, n * k), 1)
    idle = 7 + rng.poisson(10.0, n * k)
    days_since_login = np.where(sessions > 0, rng.integers(0, 4, n * k), idle)
    stamps = _timestamps(spec, day)
    return pd.DataFrame(
        {
            "customer_id": np.repeat(customers["customer_id"].to_numpy(), k),
            "event_timestamp": stamps,
            "created": stamps + pd.Timedelta(minutes=5),
            "sessions_7d": sessions.astype("int64"),
            "minutes_7d": minutes.astype("float64"),
            "days_since_last_login": days_since_login.astype("int64"),
            "support_tickets_30d": rng.poisson(0.3 + 0.9 * (engagement < 0.7)).astype("int64"),
            "payment_failures_90d": rng.poisson(0.15, n * k).astype("int64"),
        }
    )


def _labels(
    spec: SimulationSpec,
    customers: pd.DataFrame,
    profile: pd.DataFrame,
    activity: pd.DataFrame,
    rng: np.random.Generator,
) -> pd.DataFrame:
    days = np.arange(spec.label_every_days, spec.days, spec.label_every_days)
    n, k = len(customers), len(days)
    row = np.repeat(np.arange(n), k)
    day = np.tile(days, n)
    # Each label sees the same-day activity snapshot and the latest profile snapshot.
    activity_count = len(_snapshot_days(spec, spec.activity_every_days))
    profile_count = len(_snapshot_days(spec, PROFILE_EVERY_DAYS))
    act = activity.iloc[row * activity_count + day // spec.activity_every_days]
    prof = profile.iloc[row * profile_count + day // PROFILE_EVERY_DAYS]
    logit = np.where(
        _drifted(spec, day, Scenario.CONCEPT_DRIFT),
        _concept_drift_logit(prof, act),
        _baseline_logit(prof, act),
    )
    churned = rng.random(n * k) < 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame(
        {
            "customer_id": customers["customer_id"].to_numpy()[row],
            "event_timestamp": _timestamps(spec, day, LABEL_HOUR),
            "churned": churned.astype("int64"),
        }
    )


def _baseline_logit(profile: pd.DataFrame, activity: pd.DataFrame) -> np.ndarray:
    """Churn driven by disengagement, friction and a short tenure."""
    return np.asarray(
        -1.6
        - 1.3 * (np.log1p(activity["sessions_7d"].to_numpy()) - 1.3)
        + 0.06 * activity["days_since_last_login"].to_numpy()
        + 0.45 * activity["support_tickets_30d"].to_numpy()
        + 0.9 * activity["payment_failures_90d"].to_numpy()
        + 0.5 * (profile["plan"].to_numpy() == "basic")
        - 0.012 * profile["tenure_months"].to_numpy()
    )


def _concept_drift_logit(profile: pd.DataFrame, activity: pd.DataFrame) -> np.ndarray:
    """A competitor undercuts prices in the south and east: price now drives churn."""
    competitor = np.isin(profile["region"].to_numpy(), ["south", "east"])
    return np.asarray(
        -2.4
        + 0.05 * (profile["monthly_charge"].to_numpy() - 55.0)
        + 1.6 * competitor
        - 0.2 * (np.log1p(activity["sessions_7d"].to_numpy()) - 1.3)
        + 0.9 * activity["payment_failures_90d"].to_numpy()
    )


def corrupt(
    data: SimulatedData, corruptions: list[Corruption], rng: np.random.Generator
) -> SimulatedData:
    """Apply kinds of broken data an upstream pipeline produces."""
    profile, activity, labels = data.profile.copy(), data.activity.copy(), data.labels.copy()
    for kind in corruptions:
        if kind is Corruption.NULLS:
            activity.loc[rng.random(len(activity)) < 0.05, "minutes_7d"] = np.nan
        elif kind is Corruption.OUT_OF_RANGE:
            profile.loc[rng.random(len(profile)) < 0.05, "tenure_months"] = -5
        elif kind is Corruption.DUPLICATED_KEYS:
            extra = labels.sample(frac=0.02, random_state=int(rng.integers(0, 2**31)))
            labels = pd.concat([labels, extra], ignore_index=True)
        elif kind is Corruption.RENAMED_COLUMN:
            activity = activity.rename(columns={"sessions_7d": "session_count_7d"})
    return SimulatedData(profile=profile, activity=activity, labels=labels)
