"""Drift checks on recent data."""

from __future__ import annotations

from pydantic import Field

from mlops_flows.settings.group import Group


class MonitoringSettings(Group):
    """Drift checks: fixed statistical tests, so verdicts do not change with sample size."""

    window_days: int = Field(default=7, ge=1, description="Days of recent data compared.")
    min_rows: int = Field(
        default=500, ge=1, description="Fewer current rows than this is 'not enough data'."
    )
    sample_rows: int = Field(
        default=50_000, ge=100, description="Seeded cap on rows per side, so millions stay fast."
    )
    numerical_method: str = Field(default="ks", description="Evidently test for numbers.")
    numerical_threshold: float = Field(
        default=0.01, description="p-value below which a numerical column drifted."
    )
    categorical_method: str = Field(
        default="jensenshannon",
        description="Evidently test for categories. Not `chisquare`: it takes the reference "
        "shares as exact and, with 5k reference vs 50k current rows, called drift on 65% of "
        "unchanged samples.",
    )
    categorical_threshold: float = Field(
        default=0.1, description="Jensen-Shannon distance above which a category mix drifted."
    )
    drift_share: float = Field(
        default=0.3, gt=0, le=1, description="Share of drifted columns that is dataset drift."
    )
    max_roc_auc_drop: float = Field(
        default=0.05,
        description="Drop of ROC AUC on labelled recent data, against the champion's holdout, "
        "that counts as drift (performance decay).",
    )
    seed: int = Field(default=42, description="Seed of the row sampling.")
    segment_column: str | None = Field(
        default=None,
        description="Categorical feature whose values are checked for drift one by one "
        "(reported per segment, fanned out on the task runner); empty turns it off.",
    )
