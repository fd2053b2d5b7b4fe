"""`mlops approve|reject|history|rollback|reproduce`: the governed registry from a terminal."""

from __future__ import annotations

import getpass
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import typer
from rich.markup import escape
from rich.table import Table

from mlops_flows.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_REPRODUCED,
    console,
    load_settings,
    output,
    quiet_libraries,
    run_step,
)
from mlops_flows.settings import Settings
from mlops_flows.vocabulary import Approval, Tag

app = typer.Typer()

Reason = Annotated[str, typer.Option(help="Why; kept in the audit history.")]
Person = Annotated[
    str | None, typer.Option(help="Who decides (default: your login name).", show_default=False)
]
Wait = Annotated[
    float, typer.Option(help="Seconds to wait for a resumed approval run to finish.", min=0)
]
Key = Annotated[
    Path | None,
    typer.Option(
        help="Your OpenSSH Ed25519 private key: signs the decision (default "
        "MLOPS_GOVERNANCE__APPROVER_KEY_FILE; required where the worker lists approvers).",
        show_default=False,
    ),
]


@app.command()
def approve(
    version: str, reason: Reason, approver: Person = None, wait: Wait = 120, key: Key = None
) -> None:
    """Approve a challenger awaiting approval: it becomes the champion."""
    _decide("approve", version, reason, approver, wait, key)


@app.command()
def reject(
    version: str, reason: Reason, approver: Person = None, wait: Wait = 120, key: Key = None
) -> None:
    """Reject a challenger awaiting approval: the champion stays."""
    _decide("reject", version, reason, approver, wait, key)


def _signed_form(
    settings: Settings, decision: str, version: str, reason: str, approver: str, key: Path | None
) -> dict[str, str]:
    """The decision, signed with the approver's key when there is one."""
    from mlflow import MlflowClient

    from mlops_flows.registry import decisions, governance
    from mlops_flows.registry.signing import load_signer

    form = {"decision": decision, "approver": approver, "reason": reason}
    key = key or settings.governance.approver_key_file
    if key is None:
        return form
    name = settings.mlflow.model_name
    deadline = governance.open_request(MlflowClient(settings.tracking_uri), name, version)
    message = decisions.decision_message(name, version, deadline, decision, approver, reason)
    return form | {"signature": load_signer(key, "--key").sign(message)}


def _decide(
    decision: str, version: str, reason: str, approver: str | None, wait: float, key: Path | None
) -> None:
    settings = load_settings(runs_flows=True, of_model=True)
    person = approver or getpass.getuser()
    with quiet_libraries():
        form = run_step(
            "sign the decision",
            lambda: _signed_form(settings, decision, version, reason, person, key),
        )
        waiting = run_step(
            "look for the run waiting for approval", lambda: _waiting(settings, version)
        )
        if waiting is not None:
            state = run_step(f"resume flow run {waiting}", lambda: _resume(waiting, form, wait))
            if state is None:
                console.print(
                    f"  resumed; a worker applies the decision when it picks up {waiting}"
                )
                return
            if state.is_paused():  # waiting again: the decision did not authenticate
                console.print(f"[red]error:[/] {escape(_last_refusal(settings, version))}")
                raise typer.Exit(EXIT_FAILED)
            if not state.is_completed():
                console.print(
                    f"[red]error:[/] approval run {state.name}: {escape(state.message or '')}"
                )
                raise typer.Exit(EXIT_FAILED)
        else:
            from mlops_flows.flows.approval_flow import ApprovalForm, decide_churn_model

            run_step("approval flow", lambda: decide_churn_model(version, ApprovalForm(**form)))
    _show(settings, version)


def _waiting(settings: Settings, version: str) -> str | None:
    """The paused or suspended approval run of the version, if this Prefect API knows one."""
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    from mlops_flows.registry import governance

    registry = MlflowClient(settings.tracking_uri)
    tags = governance.version_tags(registry, settings.mlflow.model_name, version)
    run_id = tags.get(Tag.APPROVAL_FLOW_RUN)
    if run_id is None or tags.get(Tag.APPROVAL) != Approval.PENDING:
        return None
    if governance.now_utc() > datetime.fromisoformat(tags[Tag.APPROVAL_DEADLINE]):
        return None  # Prefect refuses to resume it; deciding directly records the timeout

    with get_client(sync_client=True) as client:
        try:
            state = client.read_flow_run(UUID(run_id)).state
        except ObjectNotFound:  # asked through another Prefect API
            return None
    return run_id if state is not None and state.is_paused() else None


def _resume(run_id: str, form: dict[str, str], wait: float) -> Any:
    """Resume with the decision; the run's final state, its new pause if it refused the
    decision and waits again, or None if it is still going."""
    from prefect.client.orchestration import get_client
    from prefect.flow_runs import resume_flow_run

    with get_client(sync_client=True) as client:
        paused = client.read_flow_run(UUID(run_id)).state
        resume_flow_run(UUID(run_id), run_input=form)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            state = client.read_flow_run(UUID(run_id)).state
            if state is not None and (
                state.is_final() or (state.is_paused() and paused and state.id != paused.id)
            ):
                return state
            time.sleep(0.5)
    return None


def _last_refusal(settings: Settings, version: str) -> str:
    from mlflow import MlflowClient

    from mlops_flows.registry import history as audit

    entries = audit.read(MlflowClient(settings.tracking_uri), settings.mlflow.model_name, version)
    refused = [e.reason for e in entries if e.action == audit.Action.DECISION_REFUSED]
    return refused[-1] if refused else "the approval run refused the decision and waits again"


def _show(settings: Settings, version: str) -> None:
    from mlflow import MlflowClient

    from mlops_flows.registry import versions as registry

    client, name = MlflowClient(settings.tracking_uri), settings.mlflow.model_name
    tags = client.get_model_version(name, version).tags
    console.print(
        f"  v{version}: status {tags.get('status')}, approval {tags.get('approval', 'none')}; "
        f"champion is v{registry.champion_version(client, name) or 'none'}"
    )


@app.command()
def history(
    version: Annotated[str | None, typer.Option(help="Only entries about this version.")] = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify",
            help="Check every entry's hash, chain and signature (the governance public key): "
            "exit 4 naming each edited, removed or inserted entry.",
        ),
    ] = False,
) -> None:
    """The audit history: every registration, approval, promotion and rollback, oldest first."""
    from mlops_flows.registry import history as audit

    settings = load_settings(of_model=True)

    def read() -> list[audit.Stored]:
        from mlflow import MlflowClient

        client = MlflowClient(settings.tracking_uri)
        return audit.read_stored(client, settings.mlflow.model_name)

    stored = run_step("read the audit history", read)
    entries = [s.entry for s in stored if version is None or s.entry.version == version]
    table = Table("when (UTC)", "action", "version", "champion", "who", "why")
    for entry in entries:
        table.add_row(
            entry.at[:19],
            entry.action,
            f"v{entry.version}",
            entry.champion_move(),
            entry.actor,
            entry.reason,
        )
    output.print(table)
    experiment = audit.experiment_name(settings.mlflow.model_name)
    console.print(f"  {len(entries)} entries, kept in MLflow experiment '{experiment}'")
    if verify:
        _verify_history(settings, stored)


def _verify_history(settings: Settings, stored: list[Any]) -> None:
    from mlops_flows.registry import history as audit

    key = run_step("read the governance public key", lambda: audit.trusted_key(settings))
    problems = audit.verify(stored, key)
    for problem in problems:
        output.print(f"[red]TAMPERED[/red] {escape(problem)}")
    signed = (
        f"signatures checked with the governance key {key.fingerprint}"
        if key
        else f"no signature checked ({audit.PUBLIC_KEY} is not set)"
    )
    if problems:
        console.print(f"  {len(problems)} problems in {len(stored)} entries ({signed})")
        raise typer.Exit(EXIT_NOT_REPRODUCED)
    console.print(f"  verified: {len(stored)} entries, hashes and chain intact, {signed}")


@app.command()
def rollback(
    reason: Reason,
    to: Annotated[
        str | None,
        typer.Option(
            help="Version to restore (default: the previous champion that passed its gates)."
        ),
    ] = None,
    requested_by: Person = None,
    redeploy: Annotated[
        bool, typer.Option(help="Then reload the scoring service and smoke-check it.")
    ] = True,
) -> None:
    """Move `champion` back to an earlier approved version, record it, and redeploy."""
    settings = load_settings(runs_flows=True, of_model=True)
    with quiet_libraries():
        from mlops_flows.flows.rollback_flow import RollbackParameters, rollback_churn_model

        parameters = RollbackParameters(
            requested_by=requested_by or getpass.getuser(),
            reason=reason,
            to_version=to,
            redeploy=redeploy,
        )
        outcome = run_step("rollback flow", lambda: rollback_churn_model(parameters))
    console.print(
        f"  champion v{outcome.rolled_back_version} -> v{outcome.restored_version}"
        + ("; redeployed" if outcome.redeployed else "; not redeployed (--no-redeploy)")
    )
    _show(settings, outcome.restored_version)


@app.command()
def reproduce(
    version: Annotated[str, typer.Argument(help="Registered version of the model, e.g. 3.")],
) -> None:
    """Rebuild a version's training set from its lineage, retrain it, compare digests, metrics
    and predictions: exit 0 exact, 4 naming what changed, 1 no such version."""
    from mlops_flows.registry.reproduce import ReproductionError
    from mlops_flows.registry.reproduce import reproduce as reproduce_version

    settings = load_settings(of_model=True)
    name = settings.mlflow.model_name
    try:
        with quiet_libraries():
            report = run_step(
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
    output.print(table)
    if not report.exact:
        console.print(f"[yellow]not exact[/]: {escape(report.verdict())}")
        raise typer.Exit(EXIT_NOT_REPRODUCED)
    console.print(f"[green]exact[/]: {escape(report.verdict())}")
