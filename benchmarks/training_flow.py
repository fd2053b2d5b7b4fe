"""Training-set build and training flow, each as a ratio to a plain baseline in the same run.

    .venv/bin/python -m benchmarks.run --only build,flow [--full]

Baselines: pandas `merge_asof` per feature view (plus the on-demand ratios) for the build, and a
plain script doing build, split, fit, evaluate, gate and save with no orchestration, tracking or
validation for the flow. The flow's peak memory above the process's resident memory before the
run is compared with the training set's size in memory.
"""

from __future__ import annotations

import pickle
import statistics
import tempfile
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.phases import TRAINING_PHASES, Phases, describe, phase_times
from benchmarks.results import Result
from benchmarks.workload import KEY, LABEL, TIMESTAMP, Workspace, Workspaces, timed


def project_build(workspace: Workspace) -> pd.DataFrame:
    from mlops_flows.adapters import features
    from mlops_flows.logic.keys import TrainingSetKeys

    keys = TrainingSetKeys(KEY, TIMESTAMP, LABEL)
    return features.build_training_set(
        workspace.store, workspace.service, workspace.data.labels, keys
    )


def same_rows(built: pd.DataFrame, expected: pd.DataFrame) -> str:
    """'identical', or what differs between the two training sets."""
    if len(built) != len(expected):
        return f"{len(built)} rows against {len(expected)}"
    try:
        pd.testing.assert_frame_equal(
            built.reset_index(drop=True), expected[built.columns].reset_index(drop=True)
        )
    except AssertionError as error:
        return "values differ: " + str(error).splitlines()[0]
    return "identical"


def measure_build(workspaces: Workspaces, sizes: list[str], repeats: int) -> list[Result]:
    """Feast point-in-time retrieval against merge_asof, median of `repeats`."""
    project_build(workspaces.get("20k"))  # warm-up: Feast and DuckDB's first query
    results = []
    for size in sizes:
        workspace = workspaces.get(size)
        workspace.activate()
        base_times, project_times = [], []
        for _ in range(repeats):
            base_times.append(timed(lambda w=workspace: _fresh_baseline(w))[0])
            seconds, built = timed(lambda w=workspace: project_build(w))
            project_times.append(seconds)
        verdict = same_rows(built, workspace.baseline_frame())
        entities = workspace.data.labels[[KEY, TIMESTAMP, LABEL]]
        feast_only, _ = timed(
            lambda w=workspace, e=entities: w.store.get_historical_features(
                entity_df=e, features=w.service
            ).to_df()
        )
        results.append(
            Result(
                stage="training-set build",
                name="Feast get_historical_features (DuckDB)",
                size=f"{len(workspace.data.labels):,} label rows",
                measured=statistics.median(project_times),
                baseline=statistics.median(base_times),
                baseline_name="pandas merge_asof",
                target=1.5,
                note=f"rows kept exactly: {verdict}; median of {repeats}. Feast "
                f"get_historical_features().to_df() alone (Feast, ibis, DuckDB) {feast_only:.2f} s "
                f"of the project's {statistics.median(project_times):.2f} s; the rest is the "
                "project's sort and TTL coverage check",
            )
        )
        workspace.frames["project"] = built
    return results


def _fresh_baseline(workspace: Workspace) -> pd.DataFrame:
    workspace.frames.pop("baseline", None)
    return workspace.baseline_frame()


def plain_training(workspace: Workspace, holdout_days: int = 21) -> float:
    """Build, split, fit, evaluate, gate, save with nothing around them; returns holdout ROC AUC."""
    from sklearn.metrics import roc_auc_score

    from mlops_flows.logic.keys import TrainingSetKeys
    from mlops_flows.logic.training import (
        ModelParameters,
        feature_columns,
        fit_model,
        predict_scores,
        split_by_time,
    )

    keys = TrainingSetKeys(KEY, TIMESTAMP, LABEL)
    split = split_by_time(_fresh_baseline(workspace), keys, holdout_days)
    model = fit_model(split.train, keys, ModelParameters(200, 0.08, 31, 40, 42))
    scores = predict_scores(model, split.holdout, feature_columns(split.holdout, keys))
    auc = float(roc_auc_score(split.holdout[LABEL], scores))
    passed = auc >= 0.70  # the absolute gate
    with tempfile.TemporaryDirectory() as folder:  # "register": the model on disk
        (Path(folder) / "model.pkl").write_bytes(pickle.dumps((model, passed)))
    return auc


class PeakMemory:
    """Resident memory sampled every 10 ms in a thread: the peak above the starting point, and
    the peak while each phase ran."""

    def __init__(self, phases: Phases) -> None:
        import psutil

        self._process = psutil.Process()
        self._phases = phases
        self.start = self.peak = self._process.memory_info().rss
        self.by_phase: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            rss, phase = self._process.memory_info().rss, self._phases.current()
            self.peak = max(self.peak, rss)
            self.by_phase[phase] = max(self.by_phase.get(phase, 0), rss)

    def describe(self) -> str:
        """'phase +N MB, ...' above the start, largest first."""
        ordered = sorted(self.by_phase.items(), key=lambda item: -item[1])
        return ", ".join(f"{p} +{(rss - self.start) / 2**20:,.0f} MB" for p, rss in ordered[:5])

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def run_flow(workspace: Workspace) -> Any:
    from mlops_flows.flows.training_flow import TrainingParameters, train_churn_model

    workspace.activate()
    return train_churn_model(TrainingParameters(window_days=workspace.spec.days, reason="bench"))


def measure_flow(workspaces: Workspaces, sizes: list[str], memory_size: str) -> list[Result]:
    """The training flow end to end against the plain script; peak memory at `memory_size`."""
    warm_up, _ = timed(lambda: run_flow(workspaces.get("20k")))
    results = []
    for size in sizes:
        workspace = workspaces.get(size)
        workspace.activate()
        plain_seconds, auc = timed(lambda w=workspace: plain_training(w))
        with phase_times(TRAINING_PHASES) as phases, PeakMemory(phases) as memory:
            flow_seconds, outcome = timed(lambda w=workspace: run_flow(w))
        workspace.trained = True
        rows = f"{len(workspace.data.labels):,} label rows"
        status = getattr(outcome, "status", None) or getattr(outcome, "name", str(outcome))
        results.append(
            Result(
                stage="training flow",
                name="build, validate, fit, evaluate, gate, register",
                size=rows,
                measured=flow_seconds,
                baseline=plain_seconds,
                baseline_name="plain script",
                target=1.3 if size == "1M" else None,
                note=f"flow outcome {status}; plain holdout ROC AUC {auc:.3f}; warm-up run "
                f"(imports, first calls) {warm_up:.1f} s not counted. Flow: "
                f"{describe(dict(phases.spent), flow_seconds)}",
            )
        )
        if size == memory_size:
            frame = workspace.baseline_frame()
            frame_mb = frame.memory_usage(deep=True).sum() / 2**20
            results.append(
                Result(
                    stage="peak memory",
                    name="training flow, peak RSS above the start",
                    size=rows,
                    measured=(memory.peak - memory.start) / 2**20,
                    baseline=frame_mb,
                    baseline_name="training set in memory",
                    unit="MB",
                    target=3.0,
                    note=f"process RSS {memory.start / 2**20:,.0f} MB before the run "
                    f"(libraries loaded), peak {memory.peak / 2**20:,.0f} MB. Peak above the "
                    f"start while each phase ran: {memory.describe()}",
                )
            )
    return results
