"""The `mlops` command. Heavy libraries are imported inside commands so `--help` stays fast."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from flows.scenarios import Scenario
from flows.settings import Settings

app = typer.Typer(
    help="MLOps flows: simulate data, manage features, train and govern the churn model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(help="The Feast feature repository.", no_args_is_help=True)
app.add_typer(features_app, name="features")
console = Console(stderr=True)
T = TypeVar("T")

EXIT_FAILED = 1
EXIT_REJECTED = 3


def _settings(runs_flows: bool = False) -> Settings:
    """Settings from the environment, the workspace ready, the Prefect API chosen."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        settings = Settings()
    except (ValidationError, SettingsError) as error:
        # A value that is not JSON fails while decoding (SettingsError), before validation.
        detail = error.__cause__ if isinstance(error, SettingsError) and error.__cause__ else ""
        console.print(f"[red]error:[/] invalid MLOPS_* setting:\n{escape(str(error))} {detail}")
        raise typer.Exit(EXIT_FAILED) from None
    from flows import runtime

    api = _run("prepare workspace", lambda: runtime.prepare(settings))
    if runs_flows:
        console.print(f"  flow runs go to {api}")
    return settings


def _expected_errors() -> tuple[type[Exception], ...]:
    """Failures with a message written for the user: shown without a traceback."""
    from flows.features import FeatureRepoError, LabelsError
    from flows.simulate import SimulationSpecError
    from flows.tracking import TrackingStoreError
    from flows.training import TrainingDataError
    from flows.validation import DataValidationError
    from flows.workspace import WorkspaceError

    return (
        FeatureRepoError,
        LabelsError,
        DataValidationError,
        TrackingStoreError,
        TrainingDataError,
        WorkspaceError,
        SimulationSpecError,
    )


def _run(step: str, action: Callable[[], T]) -> T:
    """Run one step with a spinner; turn an expected failure into one clear line and exit 1."""
    started = time.perf_counter()
    try:
        with console.status(f"{step}..."):
            result = action()
    except Exception as error:
        if isinstance(error, _expected_errors()):
            console.print(f"[red]error[/] in {step}: {escape(str(error))}")
            raise typer.Exit(EXIT_FAILED) from None
        raise
    console.print(f"[green]done[/] {step} ({time.perf_counter() - started:.1f} s)")
    return result


@contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Keep the libraries' notices for their developers out of the user's terminal."""
    import warnings

    with warnings.catch_warnings():
        import feast  # noqa: F401 - its import puts its own filters in front: import it first

        # Feast turns deprecation warnings back on ("once"); Python hides them by default.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "On demand feature view", RuntimeWarning)
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        yield


@app.command()
def simulate(
    customers: Annotated[int, typer.Option(min=1, help="Number of customers.")] = 3000,
    days: Annotated[int, typer.Option(min=14, help="Days of history.")] = 140,
    end: Annotated[datetime | None, typer.Option(help="Last day (default: today, UTC).")] = None,
    scenario: Annotated[Scenario, typer.Option(help="What happens late in the period.")] = (
        Scenario.BASELINE
    ),
    drift_start_day: Annotated[
        int | None, typer.Option(help="Day the scenario starts (default: last quarter).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the generator.")] = 7,
) -> None:
    """Write the churn example's sources and labels into the workspace."""
    from flows.simulate import SimulationSpec
    from flows.simulate import simulate as generate
    from flows.workspace import Workspace

    settings = _settings()
    spec = _run(
        "check simulation",
        lambda: SimulationSpec(
            customers=customers,
            days=days,
            end=(end or datetime.now(UTC)).date(),
            scenario=scenario,
            drift_start_day=drift_start_day,
            seed=seed,
        ),
    )
    workspace = Workspace(settings.home_resolved)
    data = _run(f"simulate {scenario.value}", lambda: generate(spec))
    paths = _run("write parquet sources", lambda: data.write(workspace.data))
    for name, path in paths.items():
        console.print(f"  {name:8} {path}")
    console.print(
        f"  {len(data.labels)} label rows, churn rate {data.labels['churned'].mean():.1%}"
    )


@features_app.command("apply")
def features_apply() -> None:
    """Register the feature definitions (like `feast apply` in features/)."""
    settings = _settings()
    with _quiet_libraries():
        names = _apply(settings)
    console.print(f"  registered: {', '.join(names)}")


def _apply(settings: Settings) -> list[str]:
    from flows import features

    store = _run("open feature store", lambda: features.open_store(settings.features.repo_path))
    return _run(
        "apply feature definitions",
        lambda: features.apply_repository(store, settings.features.repo_path),
    )


@features_app.command("materialize")
def features_materialize(
    end: Annotated[datetime | None, typer.Option(help="Load values up to (default: now).")] = None,
) -> None:
    """Load the latest feature values into the online store."""
    settings = _settings()
    with _quiet_libraries():
        _materialize(settings, end)


def _materialize(settings: Settings, end: datetime | None) -> None:
    from flows import features
    from flows.times import to_utc

    until = to_utc(end) if end else datetime.now(UTC)
    store = _run("open feature store", lambda: features.open_store(settings.features.repo_path))
    _run(f"materialize up to {until:%Y-%m-%d %H:%M}", lambda: features.materialize(store, until))


@app.command()
def train(
    as_of: Annotated[datetime | None, typer.Option(help="End of the label window.")] = None,
    window_days: Annotated[int | None, typer.Option(min=14, help="Days of labels.")] = None,
    holdout_days: Annotated[int | None, typer.Option(min=1, help="Days held out.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default from settings).")] = None,
    reason: Annotated[str, typer.Option(help="Why this run, logged with it.")] = "manual",
) -> None:
    """Run the training flow: features, checks, fit, gates, registry."""
    settings = _settings(runs_flows=True)
    outcome = _train(
        settings,
        {
            "as_of": as_of,
            "window_days": window_days,
            "holdout_days": holdout_days,
            "seed": seed,
            "reason": reason,
        },
    )
    _report_outcome(settings, outcome)


def _train(settings: Settings, parameters: dict[str, Any]) -> Any:
    with _quiet_libraries():
        from flows.training_flow import TrainingParameters, train_churn_model

        return _run(
            "training flow",
            lambda: train_churn_model(TrainingParameters(**parameters)),
        )


def _report_outcome(settings: Settings, outcome: Any, exit_if_rejected: bool = True) -> None:
    console.print(f"  model {settings.mlflow.model_name} v{outcome.version}: {outcome.status}")
    console.print(f"  gates: {outcome.gate_summary}")
    if outcome.status == "rejected":
        champion = outcome.previous_champion or "none"
        console.print(f"[yellow]rejected[/]: the champion is unchanged (v{champion}).")
        if exit_if_rejected:
            raise typer.Exit(EXIT_REJECTED)


@app.command()
def demo(
    customers: Annotated[int, typer.Option(min=100, help="Number of customers.")] = 3000,
    days: Annotated[int, typer.Option(min=70, help="Days of history.")] = 140,
    loop: Annotated[
        bool, typer.Option(help="The closed loop: drift, retrain, promotion, redeploy.")
    ] = False,
) -> None:
    """Simulate, apply, materialize, train twice (the second run faces a champion)."""
    from datetime import timedelta

    settings = _settings(runs_flows=True)
    if loop:
        _demo_loop(settings, customers)
        return
    simulate(
        customers=customers,
        days=days,
        end=None,
        scenario=Scenario.BASELINE,
        drift_start_day=None,
        seed=7,
    )
    with _quiet_libraries():
        _apply(settings)
        _materialize(settings, None)
    today = datetime.now(UTC).replace(hour=23, minute=59, second=0, microsecond=0)
    first = _train(settings, {"as_of": today - timedelta(days=7), "reason": "demo-baseline"})
    _report_outcome(settings, first)
    second = _train(settings, {"as_of": today, "reason": "demo-weekly-retrain"})
    _report_outcome(settings, second, exit_if_rejected=False)  # a rejection is a result too
    mlflow = Path(sys.executable).with_name("mlflow")
    console.print(
        "\n[bold]Where to look[/]\n"
        f"  workspace      {settings.home_resolved}\n"
        f"  MLflow UI      {mlflow} ui --backend-store-uri {settings.tracking_uri} "
        "--host 127.0.0.1 --port 5000\n"
        "  Prefect UI     mlops server   (then re-run `mlops demo` or `mlops train`)\n"
        f"  registry       model '{settings.mlflow.model_name}', alias 'champion'"
    )


def _demo_loop(settings: Settings, customers: int) -> None:
    from flows.demo import run_loop

    with _quiet_libraries():
        story = _run(
            "closed loop",
            lambda: run_loop(settings, customers, lambda line: console.print(f"  {line}")),
        )
    quality = ", ".join(f"v{v}: {auc:.3f}" for v, auc in story.recent_roc_auc.items())
    mlflow = Path(sys.executable).with_name("mlflow")
    console.print(
        "\n[bold]What happened[/]\n"
        f"  baseline champion v{story.baseline_version} served; then: {story.drift_reason}\n"
        f"  retrained v{story.retrained_version}: {story.retrained_status}; "
        f"the service now serves v{story.served_version}\n"
        f"  ROC AUC on the last labelled week: {quality}\n"
        "\n[bold]Where to look[/]\n"
        f"  MLflow UI   {mlflow} ui --backend-store-uri {settings.tracking_uri} "
        "--host 127.0.0.1 --port 5000  (runs, drift report, versions, aliases)\n"
        f"  predictions {settings.home_resolved / 'predictions'}\n"
        "  Prefect UI  run `mlops server` first, then the demo: flow runs, artifacts, events"
    )


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Start a Prefect server with its UI; local runs then use it instead of a temporary one."""
    settings = _settings()
    host = host or settings.prefect.server_host
    port = port or settings.prefect.server_port
    environment = os.environ | {
        "PREFECT_SERVER_API_HOST": host,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_UI_API_URL": f"http://{host}:{port}/api",
    }
    environment.pop("PREFECT_API_URL", None)
    console.print(
        f"Prefect UI on http://{host}:{port}; `mlops train` and `mlops demo` now use it.\n"
        f"Elsewhere: export PREFECT_API_URL=http://{host}:{port}/api"
    )
    prefect = str(Path(sys.executable).with_name("prefect"))
    # Become the server process, so Ctrl-C and a supervisor's signals reach it directly.
    os.execve(  # noqa: S606 - fixed argv, no shell
        prefect, [prefect, "server", "start", "--host", host, "--port", str(port)], environment
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default from settings).")] = None,
) -> None:
    """Serve the champion over HTTP, scoring customers from the Feast online store."""
    from flows import registry, serving
    from flows.service_contract import HEALTH, PREDICT, RELOAD, token_path

    settings = _settings()
    chosen = {"host": host, "port": port}
    serving_settings = settings.serving.model_copy(
        update={name: value for name, value in chosen.items() if value is not None}
    )
    settings = settings.model_copy(update={"serving": serving_settings})
    try:
        version = serving.champion_to_serve(settings)
    except registry.NoChampionError as error:
        console.print(f"[red]error:[/] {escape(str(error))}")
        raise typer.Exit(EXIT_FAILED) from None
    url = f"http://{serving_settings.host}:{serving_settings.port}"
    token = (
        "MLOPS_SERVING__RELOAD_TOKEN"
        if serving_settings.reload_token is not None
        else f"{token_path(settings)} (made at start if missing)"
    )
    console.print(
        f"Serving {settings.mlflow.model_name} v{version} on {url}: POST {PREDICT}, GET {HEALTH}\n"
        f"  POST {RELOAD} needs `Authorization: Bearer <token>`; token: {token}"
    )
    with _quiet_libraries():
        serving.serve(settings)


# `mlops reproduce`: exit 0 exact, 4 something differs, 1 the version cannot be reproduced.
EXIT_NOT_REPRODUCED = 4


@app.command()
def reproduce(
    version: Annotated[str, typer.Argument(help="Registered version of the model, e.g. 3.")],
) -> None:
    """Rebuild a version's training set from its lineage, retrain it, compare digests, metrics
    and predictions: exit 0 exact, 4 naming what changed, 1 no such version."""
    from rich.table import Table

    from flows.reproduce import ReproductionError
    from flows.reproduce import reproduce as reproduce_version

    settings = _settings()
    name = settings.mlflow.model_name
    try:
        with _quiet_libraries():
            report = _run(
                f"reproduce {name} v{version}", lambda: reproduce_version(settings, version)
            )
    except ReproductionError as error:
        console.print(f"[red]error[/] in reproduce {name} v{version}: {escape(str(error))}")
        raise typer.Exit(EXIT_FAILED) from None
    title = f"{name} v{version}, MLflow run {report.run_id}"
    table = Table("check", "expected", "found", "outcome", "meaning", title=title)
    colour = {"same": "green", "DIFFERS": "red", "unknown": "yellow"}
    for row in report.to_rows():
        outcome = f"[{colour[row['outcome']]}]{row['outcome']}[/]"
        table.add_row(
            *(escape(row[k]) for k in ("check", "expected", "found")),
            outcome,
            escape(row["meaning"]),
        )
    console.print(table)
    if not report.exact:
        console.print(f"[yellow]not exact[/]: {escape(report.verdict())}")
        raise typer.Exit(EXIT_NOT_REPRODUCED)
    console.print(f"[green]exact[/]: {escape(report.verdict())}")


if __name__ == "__main__":
    app()
