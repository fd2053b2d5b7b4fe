"""Names of the simulator's scenarios; a light module so the CLI can offer them fast."""

from __future__ import annotations

from enum import StrEnum


class Scenario(StrEnum):
    """What happens from `drift_start_day` on."""

    BASELINE = "baseline"
    COVARIATE_DRIFT = "covariate_drift"  # features shift, the churn mechanism stays
    CONCEPT_DRIFT = "concept_drift"  # the churn mechanism changes, features stay
    BROKEN = "broken"  # nulls, out-of-range values, a renamed column, duplicated keys


class Corruption(StrEnum):
    """One kind of broken data; the `broken` scenario applies all of them."""

    NULLS = "nulls"
    OUT_OF_RANGE = "out_of_range"
    RENAMED_COLUMN = "renamed_column"
    DUPLICATED_KEYS = "duplicated_keys"
