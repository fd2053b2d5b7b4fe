"""Feast definitions of the churn example: what a customer's features are and how fresh."""

import os
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

# Sources live in the workspace, written by `mlops simulate` or replaced by your own files.
# The path is absolute because DuckDB resolves relative paths against the working directory.
DATA = (
    Path(os.environ.get("MLOPS_HOME", Path(__file__).resolve().parent.parent / ".mlops")) / "data"
)

# The thing we predict for; a value type and join key so Feast infers nothing.
customer = Entity(
    name="customer",
    join_keys=["customer_id"],
    value_type=ValueType.INT64,
    description="A subscriber of the service.",
)

# Explicit timestamp fields: inference fails when a source has two timestamp columns.
profile_source = FileSource(
    name="customer_profile_source",
    path=str(DATA / "customer_profile.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

activity_source = FileSource(
    name="customer_activity_source",
    path=str(DATA / "customer_activity.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)

# Profile snapshots are monthly; 60 days tolerates one missed snapshot.
customer_profile = FeatureView(
    name="customer_profile",
    entities=[customer],
    ttl=timedelta(days=60),
    schema=[
        Field(name="plan", dtype=String),
        Field(name="region", dtype=String),
        Field(name="tenure_months", dtype=Int64),
        Field(name="monthly_charge", dtype=Float64),
    ],
    source=profile_source,
    online=True,
    tags={"owner": "ml-platform"},
)

# Activity aggregates are daily; older than a week they describe another customer.
customer_activity = FeatureView(
    name="customer_activity",
    entities=[customer],
    ttl=timedelta(days=7),
    schema=[
        Field(name="sessions_7d", dtype=Int64),
        Field(name="minutes_7d", dtype=Float64),
        Field(name="days_since_last_login", dtype=Int64),
        Field(name="support_tickets_30d", dtype=Int64),
        Field(name="payment_failures_90d", dtype=Int64),
    ],
    source=activity_source,
    online=True,
    tags={"owner": "ml-platform"},
)


# Ratios computed on request: one definition, so training and serving cannot disagree.
@on_demand_feature_view(
    sources=[customer_profile, customer_activity],
    schema=[
        Field(name="minutes_per_session", dtype=Float64),
        Field(name="charge_per_hour_used", dtype=Float64),
    ],
    mode="pandas",
)
def customer_ratios(inputs: pd.DataFrame) -> pd.DataFrame:
    sessions = inputs["sessions_7d"].astype("float64").clip(lower=1.0)
    minutes = inputs["minutes_7d"].astype("float64")
    return pd.DataFrame(
        {
            "minutes_per_session": minutes / sessions,
            "charge_per_hour_used": inputs["monthly_charge"].astype("float64")
            / (minutes / 60.0 + 1.0),
        }
    )


# The contract between features and the model: bump the version when the feature set changes.
churn_model_v1 = FeatureService(
    name="churn_model_v1",
    features=[customer_profile, customer_activity, customer_ratios],
    description="Features of the churn model, version 1.",
    tags={"model": "churn"},
)
