"""Unit tests of the simulator: determinism, shapes and dtypes, drift that is real, corruptions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from mlops_flows.examples.churn.scenarios import Corruption, Scenario
from mlops_flows.examples.churn.simulate import (
    LABEL_HOUR,
    PLANS,
    REGIONS,
    SimulatedData,
    SimulationSpec,
    simulate,
)

END = date(2026, 6, 30)
TIMESTAMP = "datetime64[ns, UTC]"
KEYS = ["customer_id", "event_timestamp"]

# What the Feast sources and the label reader expect, column by column.
EXPECTED_DTYPES = {
    "profile": {
        "customer_id": "int64",
        "event_timestamp": TIMESTAMP,
        "created": TIMESTAMP,
        "plan": "object",
        "region": "object",
        "tenure_months": "int64",
        "monthly_charge": "float64",
    },
    "activity": {
        "customer_id": "int64",
        "event_timestamp": TIMESTAMP,
        "created": TIMESTAMP,
        "sessions_7d": "int64",
        "minutes_7d": "float64",
        "days_since_last_login": "int64",
        "support_tickets_30d": "int64",
        "payment_failures_90d": "int64",
    },
    "labels": {"customer_id": "int64", "event_timestamp": TIMESTAMP, "churned": "int64"},
}

MODEL_COLUMNS = [
    "plan",
    "region",
    "tenure_months",
    "monthly_charge",
    "sessions_7d",
    "minutes_7d",
    "days_since_last_login",
    "support_tickets_30d",
    "payment_failures_90d",
]


def small_spec(**overrides: object) -> SimulationSpec:
    """A fast spec with a fixed end, so no test depends on today's date."""
    values: dict[str, object] = {"customers": 200, "days": 56, "end": END}
    values.update(overrides)
    return SimulationSpec(**values)  # type: ignore[arg-type]


def assert_data_equal(left: SimulatedData, right: SimulatedData) -> None:
    for name in ("profile", "activity", "labels"):
        pd.testing.assert_frame_equal(getattr(left, name), getattr(right, name))


# --- determinism ------------------------------------------------------------------------------


def test_same_spec_gives_identical_frames() -> None:
    assert_data_equal(simulate(small_spec()), simulate(small_spec()))


def test_another_seed_gives_other_frames() -> None:
    first, second = simulate(small_spec(seed=7)), simulate(small_spec(seed=8))
    assert not first.activity.equals(second.activity)
    assert not first.labels.equals(second.labels)
    assert not first.profile.equals(second.profile)


# --- shapes and dtypes ------------------------------------------------------------------------


def test_one_label_per_customer_and_label_day() -> None:
    spec = small_spec()
    data = simulate(spec)
    label_days = list(range(spec.label_every_days, spec.days, spec.label_every_days))

    assert len(label_days) == 7
    assert len(data.labels) == spec.customers * len(label_days)
    assert not data.labels.duplicated(KEYS).any()
    assert data.labels["customer_id"].nunique() == spec.customers
    assert set(data.labels["event_timestamp"]) == {
        pd.Timestamp(spec.day_timestamp(day, LABEL_HOUR)) for day in label_days
    }
    assert set(data.labels["churned"]) == {0, 1}


def test_every_label_has_a_same_day_activity_snapshot() -> None:
    data = simulate(small_spec())
    snapshot_keys = data.labels[KEYS].assign(
        event_timestamp=data.labels["event_timestamp"] - pd.Timedelta(hours=LABEL_HOUR)
    )

    assert (data.labels["event_timestamp"].dt.hour == LABEL_HOUR).all()
    assert (data.activity["event_timestamp"].dt.hour == 0).all()
    matched = snapshot_keys.merge(data.activity[KEYS], on=KEYS, how="left", indicator=True)
    assert len(matched) == len(data.labels)
    assert (matched["_merge"] == "both").all()


@pytest.mark.parametrize("table", sorted(EXPECTED_DTYPES))
def test_columns_have_the_dtypes_the_feast_sources_expect(table: str) -> None:
    frame: pd.DataFrame = getattr(simulate(small_spec()), table)

    assert {column: str(dtype) for column, dtype in frame.dtypes.items()} == EXPECTED_DTYPES[table]
    for column, dtype in EXPECTED_DTYPES[table].items():
        if dtype == "object":
            assert frame[column].map(type).eq(str).all(), column


def test_written_parquet_keeps_columns_and_dtypes(tmp_path: Path) -> None:
    data = simulate(small_spec(customers=20))
    paths = data.write(tmp_path / "data")

    assert sorted(paths) == ["activity", "labels", "profile"]
    for table, path in paths.items():
        pd.testing.assert_frame_equal(pd.read_parquet(path), getattr(data, table))


def test_created_follows_event_time_in_the_sources() -> None:
    data = simulate(small_spec())
    for frame in (data.profile, data.activity):
        assert (frame["created"] > frame["event_timestamp"]).all()
        assert not frame.duplicated(KEYS).any()


# --- drift ------------------------------------------------------------------------------------


def training_frame(data: SimulatedData) -> pd.DataFrame:
    """Labels with the latest profile and activity at or before each label time."""
    labels = data.labels.sort_values("event_timestamp", kind="stable")
    frame = labels
    for source in (data.profile, data.activity):
        features = source.drop(columns="created").sort_values("event_timestamp", kind="stable")
        frame = pd.merge_asof(
            frame, features, on="event_timestamp", by="customer_id", direction="backward"
        )
    frame["plan"] = pd.Categorical(frame["plan"], categories=PLANS)
    frame["region"] = pd.Categorical(frame["region"], categories=REGIONS)
    return frame


def fit(frame: pd.DataFrame) -> HistGradientBoostingClassifier:
    model = HistGradientBoostingClassifier(
        categorical_features="from_dtype", max_iter=100, random_state=0
    )
    with threadpool_limits(limits=1):
        model.fit(frame[MODEL_COLUMNS], frame["churned"])
    return model


def auc(model: HistGradientBoostingClassifier, frame: pd.DataFrame) -> float:
    with threadpool_limits(limits=1):
        scores = model.predict_proba(frame[MODEL_COLUMNS])[:, 1]
    return float(roc_auc_score(frame["churned"], scores))


def split_at(frame: pd.DataFrame, stamp: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    before = frame["event_timestamp"] < stamp
    return frame[before], frame[~before]


def test_concept_drift_breaks_the_old_model_and_a_retrained_one_recovers() -> None:
    spec = SimulationSpec(customers=3000, days=140, end=END, scenario=Scenario.CONCEPT_DRIFT)
    frame = training_frame(simulate(spec))
    pre, post = split_at(frame, pd.Timestamp(spec.day_timestamp(spec.drift_day)))
    pre_times = np.sort(pre["event_timestamp"].unique())
    post_times = np.sort(post["event_timestamp"].unique())
    train, holdout = split_at(pre, pd.Timestamp(pre_times[len(pre_times) * 3 // 4]))
    post_first, post_second = split_at(post, pd.Timestamp(post_times[len(post_times) // 2]))
    assert min(len(holdout), len(post_first), len(post_second)) >= 3000

    old = fit(train)
    pre_auc, post_auc = auc(old, holdout), auc(old, post)
    retrained = fit(post_first)
    old_late, retrained_late = auc(old, post_second), auc(retrained, post_second)

    # Measured: pre 0.79, post 0.48; on the late post-drift half old 0.47, retrained 0.83.
    assert pre_auc - post_auc >= 0.15, (pre_auc, post_auc)
    assert retrained_late - old_late >= 0.15, (old_late, retrained_late)


def test_covariate_drift_shifts_features_only_from_the_drift_day_on() -> None:
    baseline = simulate(small_spec())
    # Profiles are snapshots every 28 days: start the drift on one so both sides hold some.
    spec = small_spec(scenario=Scenario.COVARIATE_DRIFT, drift_start_day=28)
    drifted = simulate(spec)
    drift_start = pd.Timestamp(spec.day_timestamp(spec.drift_day))
    before_profile = baseline.profile["event_timestamp"] < drift_start
    before_activity = baseline.activity["event_timestamp"] < drift_start
    assert before_profile.any()
    assert (~before_profile).any()

    # Profiles draw no random numbers: identical before, +18 after.
    pd.testing.assert_frame_equal(drifted.profile[before_profile], baseline.profile[before_profile])
    charge_shift = (
        drifted.profile.loc[~before_profile, "monthly_charge"]
        - baseline.profile.loc[~before_profile, "monthly_charge"]
    )
    np.testing.assert_allclose(charge_shift, 18.0, atol=0.011)

    # Activity shares the random stream with the shifted draws, so compare distributions.
    def mean_sessions(data: SimulatedData, rows: pd.Series) -> float:
        return float(data.activity.loc[rows, "sessions_7d"].mean())

    before = mean_sessions(drifted, before_activity), mean_sessions(baseline, before_activity)
    after = mean_sessions(drifted, ~before_activity), mean_sessions(baseline, ~before_activity)
    assert before[0] == pytest.approx(before[1], rel=0.05), before
    assert after[0] < 0.75 * after[1], after


# --- corruptions ------------------------------------------------------------------------------


def has_null_minutes(clean: SimulatedData, broken: SimulatedData) -> None:
    nulls = broken.activity["minutes_7d"].isna()
    assert 0 < nulls.mean() < 0.15
    assert clean.activity["minutes_7d"].notna().all()


def has_negative_tenure(clean: SimulatedData, broken: SimulatedData) -> None:
    negative = broken.profile["tenure_months"] < 0
    assert negative.any()
    assert set(broken.profile.loc[negative, "tenure_months"]) == {-5}
    assert (clean.profile["tenure_months"] >= 0).all()


def has_renamed_sessions(clean: SimulatedData, broken: SimulatedData) -> None:
    assert "sessions_7d" not in broken.activity.columns
    assert "session_count_7d" in broken.activity.columns
    pd.testing.assert_series_equal(
        broken.activity["session_count_7d"], clean.activity["sessions_7d"], check_names=False
    )


def has_duplicated_label_keys(clean: SimulatedData, broken: SimulatedData) -> None:
    assert broken.labels.duplicated(KEYS).any()
    assert not clean.labels.duplicated(KEYS).any()
    assert len(broken.labels) > len(clean.labels)


CORRUPTION_CHECKS: dict[Corruption, Callable[[SimulatedData, SimulatedData], None]] = {
    Corruption.NULLS: has_null_minutes,
    Corruption.OUT_OF_RANGE: has_negative_tenure,
    Corruption.RENAMED_COLUMN: has_renamed_sessions,
    Corruption.DUPLICATED_KEYS: has_duplicated_label_keys,
}


def test_every_corruption_kind_has_a_check() -> None:
    assert set(CORRUPTION_CHECKS) == set(Corruption)


@pytest.mark.parametrize("kind", list(Corruption))
def test_each_corruption_produces_what_it_names(kind: Corruption) -> None:
    clean = simulate(small_spec())
    broken = simulate(small_spec(corruptions=(kind,)))

    CORRUPTION_CHECKS[kind](clean, broken)
    for other, check in CORRUPTION_CHECKS.items():
        if other is not kind:
            with pytest.raises(AssertionError):
                check(clean, broken)


def test_broken_scenario_applies_every_corruption() -> None:
    clean = simulate(small_spec())
    broken = simulate(small_spec(scenario=Scenario.BROKEN))

    for check in CORRUPTION_CHECKS.values():
        check(clean, broken)


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"days": 13}, r"need at least 1 customer and 14 days, got customers=200, days=13"),
        ({"customers": 0}, r"need at least 1 customer and 14 days, got customers=0, days=56"),
        (
            {"label_every_days": 7, "activity_every_days": 2},
            r"label_every_days must be a multiple of activity_every_days .* \(got 7 and 2\)",
        ),
    ],
    ids=["too-few-days", "no-customers", "cadence-mismatch"],
)
def test_invalid_spec_raises_a_value_error_that_explains(
    overrides: dict[str, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        small_spec(**overrides)
