"""The `mlops` command. Heavy libraries are imported inside commands so `--help` stays fast."""

from __future__ import annotations

import os
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from mlops_flows.cli.common import (
    EXIT_FAILED,
    console,
    load_settings,
    quiet_libraries,
    run_step,
)
from mlops_flows.cli.governance import app as governance_app
from mlops_flows.cli.runs import app as runs_app
from mlops_flows.cli.runs import report_outcome, run_training
from mlops_flows.examples.churn.scenarios import Scenario
from mlops_flows.settings import Settings

app = typer.Typer(
    help="MLOps flows: manage features, train, govern, serve and monitor each use case's model.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
features_app = typer.Typer(help="The Feast feature repository.", no_args_is_help=True)
app.add_typer(features_app, name="features")
stack_app = typer.Typer(
    help="The production-like stack on this machine: MLflow and Prefect servers on "
    "PostgreSQL (PostgreSQL and Redis must be running).",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
app.registered_commands += runs_app.registered_commands + governance_app.registered_commands


@app.callback()
def use_case(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="The use case a command acts on: usecases/<MODEL>.toml (default: the only one; "
            "or MLOPS_MODEL).",
        ),
    ] = None,
) -> None:
    """Every command: the use case chosen before any settings are read."""
    if model is not None:  # read by the settings, in this process and in its flow runs
        os.environ["MLOPS_MODEL"] = model


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
    from mlops_flows.examples.churn.simulate import SimulationSpec
    from mlops_flows.examples.churn.simulate import simulate as generate
    from mlops_flows.ops.workspace import Workspace

    settings = load_settings()
    spec = run_step(
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
    data = run_step(f"simulate {scenario.value}", lambda: generate(spec))
    paths = run_step("write parquet sources", lambda: data.write(workspace.data))
    for name, path in paths.items():
        console.print(f"  {name:8} {path}")
    console.print(
        f"  {len(data.labels)} label rows, churn rate {data.labels['churned'].mean():.1%}"
    )


@features_app.command("apply")
def features_apply() -> None:
    """Register the feature definitions (like `feast apply` in features/)."""
    settings = load_settings()
    with quiet_libraries():
        names = _apply(settings)
    console.print(f"  registered: {', '.join(names)}")


def _apply(settings: Settings) -> list[str]:
    from mlops_flows.adapters import features

    store = run_step("open feature store", lambda: features.open_store(settings.features.repo_path))
    try:
        return run_step(
            "apply feature definitions",
            lambda: features.apply_repository(store, settings.features.repo_path),
        )
    finally:
        features.close_store(store)


@features_app.command("materialize")
def features_materialize(
    end: Annotated[datetime | None, typer.Option(help="Load values up to (default: now).")] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Reload every view's TTL window, not only what is new.")
    ] = False,
) -> None:
    """Load the latest feature values into the online store."""
    settings = load_settings()
    with quiet_libraries():
        _materialize(settings, end, full)


def _materialize(settings: Settings, end: datetime | None, full: bool = False) -> None:
    from mlops_flows.adapters import features, online_store
    from mlops_flows.logic.times import to_utc

    until = to_utc(end) if end else datetime.now(UTC)
    store = run_step("open feature store", lambda: features.open_store(settings.features.repo_path))
    try:
        reloaded = run_step(
            f"materialize up to {until:%Y-%m-%d %H:%M}",
            lambda: online_store.materialize(store, until, full),
        )
    finally:
        features.close_store(store)
    if reloaded:
        console.print(f"  {online_store.lost_values_notice(reloaded)}")


@features_app.command("env")
def features_env() -> None:
    """Print `export` lines for the Feast CLI (`eval "$(mlops features env)"`); secrets too."""
    settings = Settings()
    from mlops_flows.settings import DERIVED_FEAST_VARIABLES

    environment = settings.library_environment()
    for name in ("MLOPS_HOME", "FEAST_USAGE", "FEAST_FS_YAML_FILE_PATH", *DERIVED_FEAST_VARIABLES):
        if name in environment:
            typer.echo(f"export {name}={shlex.quote(environment[name])}")


@stack_app.command("up")
def stack_up() -> None:
    """Start the MLflow and Prefect servers (loopback by default) and wait until healthy."""
    from mlops_flows.ops import stack

    settings = load_settings()
    run_step("start the stack", lambda: stack.up(settings, lambda line: console.print(f"  {line}")))
    _print_status(stack.status(settings))
    console.print(
        "  use it: export MLOPS_PROFILE=production (and the same MLOPS_* settings) before "
        "`mlops features apply`, `mlops train` or a Prefect worker"
    )


@stack_app.command("down")
def stack_down() -> None:
    """Stop the servers `mlops stack up` started (their whole process groups)."""
    from mlops_flows.ops import stack

    settings = load_settings()
    stopped = run_step("stop the stack", lambda: stack.down(settings))
    console.print(f"  stopped: {', '.join(stopped) or 'nothing was running'}")


@stack_app.command("status")
def stack_status() -> None:
    """Each service with its URL and health; exit 1 when one is not healthy."""
    from mlops_flows.ops import stack

    found = stack.status(load_settings())
    _print_status(found)
    if not all(service.healthy for service in found):
        raise typer.Exit(EXIT_FAILED)


def _print_status(found: list[Any]) -> None:
    """One line a service on stdout (name, URL, up or down, pid); why it is down on stderr."""
    for service in found:
        pid = f" pid {service.pid}" if service.pid else ""
        state = "up" if service.healthy else "down"
        typer.echo(f"{service.name:8} {service.url:34} {state}{pid}")
        if not service.healthy:
            console.print(f"  [red]{service.name} down:[/] {escape(service.detail)}")


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

    settings = load_settings(runs_flows=True, of_model=True)
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
    with quiet_libraries():
        _apply(settings)
        _materialize(settings, None)
    today = datetime.now(UTC).replace(hour=23, minute=59, second=0, microsecond=0)
    first = run_training(settings, {"as_of": today - timedelta(days=7), "reason": "demo-baseline"})
    report_outcome(settings, first)
    second = run_training(settings, {"as_of": today, "reason": "demo-weekly-retrain"})
    report_outcome(settings, second, exit_if_rejected=False)  # a rejection is a result too
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
    from mlops_flows.cli.demo import run_loop

    with quiet_libraries():
        story = run_step(
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
    settings = load_settings()
    host = host or settings.prefect.server_host
    port = port or settings.prefect.server_port
    from mlops_flows.ops.supervision import server_environment

    environment = server_environment(
        "PREFECT_",
        {
            "PREFECT_SERVER_API_HOST": host,
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_UI_API_URL": f"http://{host}:{port}/api",
        },
    )
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
    from mlops_flows.registry import versions as registry
    from mlops_flows.serving import app as serving
    from mlops_flows.serving.contract import HEALTH, PREDICT, RELOAD, token_path

    settings = load_settings(scoring=True, of_model=True)  # production: the scoring account
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
    with quiet_libraries():
        serving.serve(settings)


if __name__ == "__main__":
    app()
