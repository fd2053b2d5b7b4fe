"""Training-set build and training flow time, each as a ratio to a plain baseline in the same run.

    .venv/bin/python benchmarks/training_flow.py            # demo size (57k label rows)
    .venv/bin/python benchmarks/training_flow.py --full     # and 1M label rows

Baselines: pandas `merge_asof` per feature view (plus the on-demand ratios) for the build, and a
plain script doing build, split, fit and evaluate with no orchestration, tracking or validation
for the flow. Absolute seconds on a shared 2-core machine are noise; the ratios are the figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from flows.settings import Settings
from flows.simulate import SimulationSpec, simulate


@dataclass(frozen=True)
class Size:
    name: str
    spec: SimulationSpec


SIZES = [
    Size(
        "demo (3k customers, 140 days)",
        SimulationSpec(customers=3000, days=140, end=date(2026, 6, 30)),
    ),
    Size(
        "1M label rows (100k customers, weekly)",
        SimulationSpec(customers=100_000, days=77, end=date(2026, 6, 30), activity_every_days=7),
    ),
]


def merge_asof_baseline(labels: pd.DataFrame, sources: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The lower bound: one backward as-of join per feature view, then the ratios."""
    frame = labels.sort_values("event_timestamp")
    for name, ttl in (("activity", timedelta(days=7)), ("profile", timedelta(days=60))):
        source = sources[name].drop(columns="created").sort_values("event_timestamp")
        frame = pd.merge_asof(
            frame, source, on="event_timestamp", by="customer_id", tolerance=pd.Timedelta(ttl)
        )
    minutes = frame["minutes_7d"]
    frame["minutes_per_session"] = minutes / frame["sessions_7d"].clip(lower=1)
    frame["charge_per_hour_used"] = frame["monthly_charge"] / (minutes / 60.0 + 1.0)
    return frame


def plain_training(labels: pd.DataFrame, sources: dict[str, pd.DataFrame]) -> float:
    """Build, split, fit, evaluate with nothing around them; returns the holdout ROC AUC."""
    from sklearn.metrics import roc_auc_score

    from flows.features import TrainingSetKeys
    from flows.training import (
        ModelParameters,
        feature_columns,
        fit_model,
        predict_scores,
        split_by_time,
    )

    keys = TrainingSetKeys("customer_id", "event_timestamp", "churned")
    frame = merge_asof_baseline(labels, sources)
    split = split_by_time(frame, keys, 21)
    model = fit_model(split.train, keys, ModelParameters(200, 0.08, 31, 40, 42))
    scores = predict_scores(model, split.holdout, feature_columns(split.holdout, keys))
    return float(roc_auc_score(split.holdout["churned"], scores))


def timed(action) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def measure(size: Size, home: Path) -> list[tuple[str, float, float]]:
    os.environ["MLOPS_HOME"] = str(home)
    settings = Settings()
    settings.export_library_environment()
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = settings.tracking_uri
    from flows import features
    from flows.training_flow import TrainingParameters, train_churn_model
    from flows.workspace import Workspace

    data = simulate(size.spec)
    data.write(Workspace(home).ensure().data)
    store = features.open_store(settings.features.repo_path)
    features.apply_repository(store, settings.features.repo_path)
    service = features.get_feature_service(store, settings.features.feature_service)
    keys = features.TrainingSetKeys("customer_id", "event_timestamp", "churned")
    sources = {"activity": data.activity, "profile": data.profile}

    baseline_build, expected = timed(lambda: merge_asof_baseline(data.labels, sources))
    feast_build, built = timed(
        lambda: features.build_training_set(store, service, data.labels, keys)
    )
    assert len(built) == len(expected) == len(data.labels), "rows lost"  # type: ignore[arg-type]

    baseline_flow, _ = timed(lambda: plain_training(data.labels, sources))
    parameters = TrainingParameters(window_days=size.spec.days, reason="benchmark")
    flow_time, outcome = timed(lambda: train_churn_model(parameters))
    print(f"  {size.name}: {len(data.labels)} label rows, flow outcome {outcome}")
    return [
        (f"training-set build, {size.name}", feast_build, baseline_build),
        (f"training flow, {size.name}", flow_time, baseline_flow),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="also measure 1M label rows")
    arguments = parser.parse_args()
    sizes = SIZES if arguments.full else SIZES[:1]
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as folder:
        # A warm-up run pays the one-off costs (imports, temporary Prefect server, MLflow
        # migrations) so that the figures are about the work, not the start-up.
        warm = Size("warm-up", SimulationSpec(customers=600, days=84, end=date(2026, 6, 30)))
        warm_up, _ = timed(lambda: measure(warm, Path(folder) / "warm"))
        print(f"warm-up (start-up costs included): {warm_up:.1f} s")
        for index, size in enumerate(sizes):
            rows += measure(size, Path(folder) / f"size-{index}")
    print("\n| figure | project (s) | baseline (s) | ratio |\n| --- | --- | --- | --- |")
    for name, value, baseline in rows:
        print(f"| {name} | {value:.2f} | {baseline:.2f} | {value / baseline:.2f}x |")


if __name__ == "__main__":
    main()
