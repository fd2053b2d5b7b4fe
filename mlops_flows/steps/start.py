"""How every flow run starts, and how one ends with a named state, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, cast

from mlops_flows.adapters import tracking
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import history
from mlops_flows.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class Started:
    """What a flow run starts with."""

    settings: Settings
    experiment_id: str  # empty unless the flow asked for the MLflow experiment


def start(experiment: bool = False, signs: bool = False, of_model: bool = True) -> Started:
    """Settings from the environment and the use case; with `of_model` (a run about a model),
    a clear error if no use case says what the model is; the libraries' environment exported
    (a run on a worker starts here, not at the CLI); with `signs`, the governance key checked
    before any change (in production, a run without it stops here); the workspace; with
    `experiment`, MLflow connected and the experiment's id."""
    settings = Settings()
    if of_model:
        settings.require_use_case()
    settings.export_library_environment()
    if signs:
        history.signer(settings)
    workspace = Workspace(settings.home_resolved).ensure()
    experiment_id = ""
    if experiment:
        experiment_id = tracking.connect(
            settings.tracking_uri, settings.mlflow.experiment, workspace.mlflow_artifacts
        )
    return Started(settings, experiment_id)


def ended(outcome: T, name: str, message: str) -> T:
    """End a flow run whose outcome left things as they were (rejected, no drift, ...) in a
    Completed state named `name`, shown in the UI. Prefect makes a returned state the run's
    final state and hands its data, the outcome, to whoever called the flow: typed as the
    outcome, which the caller gets."""
    from prefect.states import Completed

    return cast(T, Completed(name=name, message=message, data=outcome))
