"""Unit tests of the time split, the fitted pipeline and its skops trust list, on inline frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from mlops_flows.logic.keys import TrainingSetKeys
from mlops_flows.logic.training import (
    ModelParameters,
    TrainingDataError,
    check_trainable,
    feature_columns,
    fit_model,
    known_categories,
    predict_scores,
    split_by_time,
)
from mlops_flows.registry.versions import SKOPS_TRUSTED_TYPES, UntrustedModelError, load_model_file

KEYS = TrainingSetKeys(entity_key="customer_id", timestamp="event_timestamp", label="churned")
FEATURES = ["plan", "region", "tenure_months", "monthly_charge", "sessions_7d"]
PARAMETERS = ModelParameters(
    max_iter=20, learning_rate=0.1, max_leaf_nodes=8, min_samples_leaf=10, seed=3
)
FIRST_LABEL = pd.Timestamp("2026-04-07 06:00", tz="UTC")


def training_frame(rows: int = 300, seed: int = 11, label_days: int = 84) -> pd.DataFrame:
    """Weekly labels at 06:00 over `label_days`, text and number features, churn from both."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "standard", "premium"], rows)
    sessions = rng.poisson(3.0, rows)
    logit = -0.5 + 1.2 * (plan == "basic") - 0.4 * sessions
    week = rng.integers(0, label_days // 7, rows)
    return pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + rows, dtype="int64"),
            "event_timestamp": FIRST_LABEL + pd.to_timedelta(week * 7, unit="D"),
            "churned": (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype("int64"),
            "plan": plan,
            "region": rng.choice(["north", "south"], rows),
            "tenure_months": rng.integers(0, 120, rows).astype("int64"),
            "monthly_charge": rng.normal(55.0, 15.0, rows),
            "sessions_7d": sessions.astype("int64"),
        }
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return training_frame()


@pytest.fixture(scope="module")
def model(frame: pd.DataFrame) -> Pipeline:
    return fit_model(frame, KEYS, PARAMETERS)


@pytest.mark.parametrize("holdout_days", [1, 7, 14, 21, 28, 77])
def test_split_keeps_training_rows_before_the_holdout_and_loses_none(
    frame: pd.DataFrame, holdout_days: int
) -> None:
    split = split_by_time(frame, KEYS, holdout_days)

    assert split.train[KEYS.timestamp].max() < split.holdout[KEYS.timestamp].min()
    assert split.train[KEYS.timestamp].max() <= split.cutoff < split.holdout[KEYS.timestamp].min()
    assert len(split.train) + len(split.holdout) == len(frame)
    rejoined = pd.concat([split.train, split.holdout]).sort_values(KEYS.entity_key)
    pd.testing.assert_frame_equal(
        rejoined.reset_index(drop=True),
        frame.sort_values(KEYS.entity_key).reset_index(drop=True),
    )


@pytest.mark.parametrize("holdout_days", [1, 7, 8, 21])
def test_a_time_sorted_frame_splits_into_the_same_rows_without_a_copy(
    frame: pd.DataFrame, holdout_days: int
) -> None:
    ordered = frame.sort_values([KEYS.timestamp, KEYS.entity_key]).reset_index(drop=True)
    sliced = split_by_time(ordered, KEYS, holdout_days)
    masked = split_by_time(ordered.sample(frac=1.0, random_state=1), KEYS, holdout_days)
    for part, expected in ((sliced.train, masked.train), (sliced.holdout, masked.holdout)):
        pd.testing.assert_frame_equal(
            part, expected.sort_values([KEYS.timestamp, KEYS.entity_key]).reset_index(drop=True)
        )
        assert np.shares_memory(
            part["tenure_months"].to_numpy(), ordered["tenure_months"].to_numpy()
        )
    assert sliced.cutoff == masked.cutoff


@pytest.mark.parametrize(("holdout_days", "holdout_label_dates"), [(1, 1), (7, 1), (8, 2), (21, 3)])
def test_holdout_covers_the_last_days_of_label_time(
    frame: pd.DataFrame, holdout_days: int, holdout_label_dates: int
) -> None:
    split = split_by_time(frame, KEYS, holdout_days)
    assert split.holdout[KEYS.timestamp].nunique() == holdout_label_dates
    assert split.cutoff == frame[KEYS.timestamp].max() - pd.Timedelta(days=holdout_days)


@pytest.mark.parametrize(
    ("one_class_part", "message"),
    [("training", "The training part"), ("holdout", "The holdout part")],
)
def test_split_names_the_part_that_has_one_class(
    frame: pd.DataFrame, one_class_part: str, message: str
) -> None:
    cutoff = frame[KEYS.timestamp].max() - pd.Timedelta(days=7)
    in_part = frame[KEYS.timestamp] <= cutoff
    if one_class_part == "holdout":
        in_part = ~in_part
    one_class = frame.assign(churned=np.where(in_part, 0, frame[KEYS.label]))

    with pytest.raises(TrainingDataError, match=message):
        split_by_time(one_class, KEYS, holdout_days=7)


def test_split_of_a_window_shorter_than_the_holdout_names_the_empty_training_part(
    frame: pd.DataFrame,
) -> None:
    with pytest.raises(TrainingDataError, match=r"The training part \(0 rows"):
        split_by_time(frame, KEYS, holdout_days=365)


def test_feature_columns_are_all_but_key_timestamp_and_label(frame: pd.DataFrame) -> None:
    assert feature_columns(frame, KEYS) == FEATURES


def test_feature_columns_keep_the_frame_order() -> None:
    frame = pd.DataFrame(columns=["b", "churned", "a", "customer_id", "event_timestamp", "c"])
    assert feature_columns(frame, KEYS) == ["b", "a", "c"]


def test_predict_scores_names_the_missing_columns(model: Pipeline, frame: pd.DataFrame) -> None:
    without = frame.drop(columns=["plan", "sessions_7d"])
    with pytest.raises(TrainingDataError, match=r"plan, sessions_7d"):
        predict_scores(model, without, FEATURES)


def test_predict_scores_are_probabilities(model: Pipeline, frame: pd.DataFrame) -> None:
    scores = predict_scores(model, frame, FEATURES)
    assert scores.shape == (len(frame),)
    assert scores.dtype == np.float64
    assert ((scores >= 0.0) & (scores <= 1.0)).all()


def test_model_reads_every_feature_column(model: Pipeline) -> None:
    assert list(model.feature_names_in_) == FEATURES


def test_declared_skops_trusted_types_match_the_saved_model(model: Pipeline) -> None:
    untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    assert sorted(untrusted) == sorted(SKOPS_TRUSTED_TYPES)


def test_saved_model_loads_with_the_declared_types_and_scores_the_same(
    model: Pipeline, frame: pd.DataFrame, tmp_path: Path
) -> None:
    skops.io.dump(model, tmp_path / "model.skops")
    loaded = load_model_file(tmp_path / "model.skops", "the model")
    np.testing.assert_array_equal(
        predict_scores(loaded, frame, FEATURES), predict_scores(model, frame, FEATURES)
    )


def test_a_model_holding_an_untrusted_type_is_refused_before_anything_of_it_loads(
    model: Pipeline, tmp_path: Path
) -> None:
    """A pipeline whose first step would call `os.system` on its input: skops names the type
    `posix.system`, which an attacker's MLmodel could list as trusted. The list in code does
    not, so the file is refused."""
    bent = Pipeline([("run", FunctionTransformer(os.system)), ("model", model)])
    skops.io.dump(bent, tmp_path / "model.skops")
    with pytest.raises(UntrustedModelError, match=r"outside the trusted list: posix\.system"):
        load_model_file(tmp_path / "model.skops", "Model churn v9")


def test_a_model_that_is_not_a_pipeline_is_refused(tmp_path: Path) -> None:
    skops.io.dump(DummyClassifier().fit([[0], [1]], [0, 1]), tmp_path / "model.skops")
    with pytest.raises(UntrustedModelError, match="is a DummyClassifier, not a scikit-learn"):
        load_model_file(tmp_path / "model.skops", "Model churn v9")


def test_fitting_twice_with_the_same_seed_gives_identical_scores(frame: pd.DataFrame) -> None:
    first = predict_scores(fit_model(frame, KEYS, PARAMETERS), frame, FEATURES)
    second = predict_scores(fit_model(frame, KEYS, PARAMETERS), frame, FEATURES)
    np.testing.assert_array_equal(first, second)


def test_fit_and_predict_read_the_frame_in_place_and_leave_it_as_it_was(
    frame: pd.DataFrame,
) -> None:
    before = frame.copy()
    fitted = fit_model(frame, KEYS, PARAMETERS)
    scores = predict_scores(fitted, frame, FEATURES)
    on_a_copy = fitted.predict_proba(frame[FEATURES].copy())[:, 1]
    np.testing.assert_array_equal(scores, on_a_copy)
    np.testing.assert_array_equal(
        fit_model(before.copy(), KEYS, PARAMETERS).predict_proba(before[FEATURES])[:, 1], scores
    )
    pd.testing.assert_frame_equal(frame, before)


def test_train_metrics_use_every_row_or_a_seeded_sample() -> None:
    from mlops_flows.logic.training import metric_rows

    frame = pd.DataFrame({"x": range(5000)})
    assert metric_rows(frame, None, seed=1) is frame
    assert metric_rows(frame, 5000, seed=1) is frame
    sample = metric_rows(frame, 1000, seed=1)
    assert len(sample) == 1000
    assert sample.index.is_unique
    pd.testing.assert_frame_equal(sample, metric_rows(frame, 1000, seed=1))
    assert not sample.equals(metric_rows(frame, 1000, seed=2))


def test_known_categories_are_what_each_encoder_saw_in_training(model: Pipeline) -> None:
    from mlops_flows.serving.scoring import feature_shares, unseen_categories

    known = known_categories(model)
    assert known == {
        "plan": frozenset({"basic", "standard", "premium"}),
        "region": frozenset({"north", "south"}),
    }
    row = {"plan": "enterprise", "region": "south", "sessions_7d": 99}
    assert unseen_categories(row, known) == ["plan"]
    records = [{"unseen_categories": ["plan"]}, {"unseen_categories": []}]
    assert feature_shares(records, "unseen_categories") == {"plan": 0.5}
    assert feature_shares(records, "missing_features") == {}
    assert feature_shares([], "unseen_categories") == {}


def _labelled(**features: list[object]) -> pd.DataFrame:
    rows = len(next(iter(features.values())))
    return pd.DataFrame(
        {
            KEYS.entity_key: range(rows),
            KEYS.timestamp: pd.Timestamp("2026-06-01", tz="UTC"),
            KEYS.label: [0, 1] * (rows // 2),
            **features,
        }
    )


def test_numbers_text_booleans_and_categories_are_trainable() -> None:
    frame = _labelled(
        amount=[1.5, 2.0], visits=[1, 2], plan=["a", "b"], active=[True, False]
    ).assign(region=lambda f: f["plan"].astype("category"))
    check_trainable(frame, KEYS, ("plan", "region"))


def test_lists_maps_and_structs_are_refused_before_any_fit_naming_each() -> None:
    frame = _labelled(amount=[1.5, 2.0], tags=[["x"], ["y", "z"]], attributes=[{"k": 1}, None])
    with pytest.raises(TrainingDataError) as raised:
        check_trainable(frame, KEYS, ())
    message = str(raised.value)
    assert "tags (list), attributes (dict) are not numbers, text or booleans" in message
    assert "amount" not in message


def test_slice_columns_the_training_set_lacks_are_named_with_the_setting() -> None:
    frame = _labelled(amount=[1.5, 2.0], region=["n", "s"])
    with pytest.raises(TrainingDataError) as raised:
        check_trainable(frame, KEYS, ("plan", "region", "tier"))
    message = str(raised.value)
    assert message.startswith("Slice column(s) plan, tier (MLOPS_GATES__SLICE_COLUMNS)")
    assert "whose columns are customer_id, event_timestamp, churned, amount, region" in message
