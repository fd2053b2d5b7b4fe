"""`mlops train|monitor|score|redeploy`: one flow run in this process, its outcome in a few
lines, an expected failure on one line (exit 1)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from mlops_flows.cli.common import (
    EXIT_REJECTED,
    console,
    load_settings,
    quiet_libraries,
    run_step,
)
from mlops_flows.registry import history
from mlops_flows.settings import Settings

if TYPE_CHECKING:  # the flows import the heavy libraries: imported when a command runs
    from mlops_flows.steps.training import TrainingOutcome

app = typer.Typer()

AsOf = Annotated[datetime | None, typer.Option(help="Time the features are read at (default now).")]


@app.command()
def train(
    as_of: Annotated[datetime | None, typer.Option(help="End of the label window.")] = None,
    window_days: Annotated[int | None, typer.Option(min=14, help="Days of labels.")] = None,
    holdout_days: Annotated[int | None, typer.Option(min=1, help="Days held out.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default from settings).")] = None,
    reason: Annotated[str, typer.Option(help="Why this run, logged with it.")] = "manual",
) -> None:
    """Run the training flow: features, checks, fit, gates, registry."""
    settings = load_settings(runs_flows=True, of_model=True)
    outcome = run_training(
        settings,
        {
            "as_of": as_of,
            "window_days": window_days,
            "holdout_days": holdout_days,
            "seed": seed,
            "reason": reason,
        },
    )
    report_outcome(settings, outcome)


def run_training(settings: Settings, parameters: dict[str, Any]) -> TrainingOutcome:
    with quiet_libraries():
        from mlops_flows.flows.training_flow import TrainingParameters, train_churn_model

        return run_step(
            "training flow",
            lambda: train_churn_model(TrainingParameters(**parameters)),
        )


def report_outcome(
    settings: Settings, outcome: TrainingOutcome, exit_if_rejected: bool = True
) -> None:
    from mlops_flows.steps.training import TrainingStatus

    console.print(f"  model {settings.mlflow.model_name} v{outcome.version}: {outcome.status}")
    if outcome.status in (TrainingStatus.SUPERSEDED, TrainingStatus.DUPLICATE):
        console.print(f"[yellow]{outcome.status}[/]: {outcome.gate_summary}")
    else:
        console.print(f"  gates: {outcome.gate_summary}")
    if outcome.status is TrainingStatus.REJECTED:
        champion = history.version_label(outcome.previous_champion)
        console.print(f"[yellow]rejected[/]: the champion is unchanged ({champion}).")
    if outcome.status is TrainingStatus.CHALLENGER:
        console.print(
            f"  awaiting approval (policy manual): `mlops approve {outcome.version} --reason ...`"
            f" or `mlops reject {outcome.version} --reason ...`"
        )
    if outcome.status.champion_unchanged and exit_if_rejected:
        raise typer.Exit(EXIT_REJECTED)


@app.command()
def monitor(
    as_of: Annotated[datetime | None, typer.Option(help="End of the window (default now).")] = None,
    window_days: Annotated[int | None, typer.Option(min=1, help="Days of recent data.")] = None,
) -> None:
    """Run the monitoring flow: the recent window against the champion's reference.

    Drift found emits `mlops.drift.detected`; broken data fails the run, never drift."""
    load_settings(runs_flows=True, of_model=True)
    with quiet_libraries():
        from mlops_flows.flows.monitoring_flow import MonitoringParameters, monitor_drift

        outcome = run_step(
            "monitoring flow",
            lambda: monitor_drift(MonitoringParameters(as_of=as_of, window_days=window_days)),
        )
    console.print(f"  v{outcome.model_version} {outcome.status}: {escape(outcome.reason)}")


@app.command()
def score(as_of: AsOf = None) -> None:
    """Run the batch scoring flow: the whole population scored by the champion, one file."""
    load_settings(runs_flows=True, of_model=True)
    with quiet_libraries():
        from mlops_flows.flows.batch_scoring_flow import BatchScoringParameters, score_batch

        outcome = run_step(
            "batch scoring flow", lambda: score_batch(BatchScoringParameters(as_of=as_of))
        )
    console.print(f"  {outcome.rows} scored with v{outcome.model_version}: {outcome.path}")


@app.command()
def redeploy(
    version: Annotated[str, typer.Argument(help="The promoted version (the champion).")],
    previous: Annotated[
        str | None,
        typer.Option(help="The champion before it, restored if the redeploy fails."),
    ] = None,
) -> None:
    """Run the redeploy flow: online store, service reload, smoke and skew check.

    A failure puts the previous champion back (with --previous) and says how far it got."""
    load_settings(runs_flows=True, of_model=True)
    with quiet_libraries():
        from mlops_flows.flows.redeploy_flow import RedeployParameters
        from mlops_flows.flows.redeploy_flow import redeploy as redeploy_flow

        outcome = run_step(
            "redeploy flow",
            lambda: redeploy_flow(RedeployParameters(version=version, previous_version=previous)),
        )
    console.print(f"  v{outcome.version} serves at {outcome.service_url}")
