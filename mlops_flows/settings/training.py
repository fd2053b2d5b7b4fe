"""Training a candidate and the gates it must pass."""

from __future__ import annotations

from pydantic import Field

from mlops_flows.settings.group import Group


class TrainingSettings(Group):
    """Defaults of a training run; each can be overridden per run by a flow parameter."""

    seed: int = Field(default=42, description="Seed of every random source in training.")
    threads: int = Field(
        default=1,
        ge=1,
        description="OpenMP threads for fit and predict; on 2 cores one thread fitted the demo "
        "9x faster than the default (threads contend), raise it on bigger machines.",
    )
    window_days: int = Field(default=84, description="Days of labels used to train and test.")
    holdout_days: int = Field(
        default=21, description="The last days of the window kept apart as holdout."
    )
    train_metric_rows: int = Field(
        default=100_000,
        ge=1000,
        description="Most training rows scored for the train metrics (a seeded sample above it): "
        "scoring a million rows again costs more than the estimate is worth.",
    )
    retrain_window_days: int = Field(
        default=42,
        ge=14,
        description="Days of labels a drift-triggered retraining uses: recent data only, so "
        "that the new regime outweighs the old one.",
    )
    max_iter: int = Field(default=200, description="Boosting iterations.")
    learning_rate: float = Field(default=0.08, description="Boosting learning rate.")
    max_leaf_nodes: int = Field(default=31, description="Leaves per tree.")
    min_samples_leaf: int = Field(default=40, description="Minimum rows in a leaf.")


class GateSettings(Group):
    """Thresholds a candidate must meet before it may serve."""

    min_roc_auc: float = Field(default=0.70, description="Lowest holdout ROC AUC accepted.")
    max_log_loss: float = Field(default=0.60, description="Highest holdout log loss accepted.")
    max_calibration_error: float = Field(
        default=0.08, description="Highest expected calibration error (10 bins) accepted."
    )
    non_inferiority_margin: float = Field(
        default=0.01,
        description="How much lower than the champion's ROC AUC the candidate may be "
        "(lower bound of the paired bootstrap interval of the difference).",
    )
    bootstrap_resamples: int = Field(default=300, description="Paired bootstrap resamples.")
    bootstrap_confidence: float = Field(default=0.95, description="Bootstrap interval level.")
    slice_columns: tuple[str, ...] = Field(
        default=(), description="Columns whose values form evaluation slices (none: no slices)."
    )
    min_slice_size: int = Field(
        default=200, description="Slices with fewer holdout rows are reported, not gated."
    )
    slice_margin: float = Field(
        default=0.03, description="How much a slice's ROC AUC may fall below the champion's."
    )
