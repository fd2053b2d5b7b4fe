"""What every `mlops` command shares: the console, exit codes, settings, steps with spinners."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from mlops_flows.errors import MlopsError
from mlops_flows.settings import Settings

console = Console(stderr=True)  # progress and messages
output = Console()  # data a user may pipe: tables
T = TypeVar("T")

EXIT_FAILED = 1
EXIT_REJECTED = 3
EXIT_NOT_REPRODUCED = 4


def load_settings(
    runs_flows: bool = False, scoring: bool = False, of_model: bool = False
) -> Settings:
    """Settings from the environment and the use case, the workspace ready, the Prefect API
    chosen (`scoring`: the process logs in to MLflow as the scoring service; `of_model`: the
    command acts on a model, which its use case must say enough about)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        settings = Settings()
    except (ValidationError, SettingsError) as error:
        # A value that is not JSON fails while decoding (SettingsError), before validation.
        detail = error.__cause__ if isinstance(error, SettingsError) and error.__cause__ else ""
        message = redact_secrets(f"{error} {detail}")
        where = "an MLOPS_* variable or the use-case file"
        console.print(f"[red]error:[/] invalid setting ({where}):\n{escape(message)}")
        raise typer.Exit(EXIT_FAILED) from None
    if of_model:
        try:
            settings.require_use_case()
        except MlopsError as error:
            console.print(f"[red]error:[/] {escape(str(error))}")
            raise typer.Exit(EXIT_FAILED) from None
    from mlops_flows.ops import runtime

    api = run_step("prepare workspace", lambda: runtime.prepare(settings, scoring))
    if runs_flows:
        console.print(f"  flow runs go to {api}")
    return settings


def redact_secrets(text: str) -> str:
    """Pydantic shows rejected values; never those of a password, token or key variable."""
    secret_name = re.compile(r"PASS|PASW|PWD|TOKEN|SECRET|KEY", re.IGNORECASE)
    for name, value in os.environ.items():
        if name.upper().startswith("MLOPS_") and secret_name.search(name) and value:
            text = text.replace(value, "**********")
    return text


# What MLflow's client raises once a server answered 5xx to every retry.
SERVER_GAVE_UP = re.compile(r"API request to (\S+) failed .*too many (5\d\d) error responses")


def server_error(error: BaseException) -> str | None:
    """A clear line for an MLflow server that kept answering 5xx (its database restarting or
    down, say); None for any other error."""
    found = SERVER_GAVE_UP.search(str(error))
    if found is None:
        return None
    return (
        f"the MLflow server answered {found.group(2)} to {found.group(1)} until its client "
        "gave up: its backend store is unavailable or restarting. The run stopped there; check "
        "the server and its database (`mlops stack status`), then run again."
    )


def expected_failure(error: BaseException) -> str | None:
    """The one line that tells an expected failure (an MlopsError, or an MLflow server that
    kept answering 5xx); None for any other error, a bug whose traceback is wanted."""
    return str(error) if isinstance(error, MlopsError) else server_error(error)


class _NoTracebackForExpectedFailures(logging.Filter):
    """Prefect's console handler prints the traceback of a failed task and of its flow run.
    For an expected failure the terminal keeps their one-line records and the CLI's own line;
    the traceback stays in the run's log on the Prefect server, which its API handler has
    already formatted when this handler sees the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and expected_failure(error) is not None:
            record.exc_info = None
            record.exc_text = None
        return True


_EXPECTED_FAILURES = _NoTracebackForExpectedFailures()


def _quiet_expected_tracebacks() -> None:
    """Put the filter on Prefect's console handlers, once Prefect has set up its logging (a
    command that runs no flow never imports Prefect)."""
    if "prefect" not in sys.modules:
        return
    for handler in logging.getLogger().handlers:
        if type(handler).__name__ == "PrefectConsoleHandler":
            handler.addFilter(_EXPECTED_FAILURES)  # a no-op when it is there already


def run_step(step: str, action: Callable[[], T]) -> T:
    """Run one step with a spinner; turn an expected failure into one clear line and exit 1."""
    started = time.perf_counter()
    _quiet_expected_tracebacks()
    try:
        with console.status(f"{step}..."):
            result = action()
    except Exception as error:
        message = expected_failure(error)
        if message is None:
            raise
        # The details first, the one line that names the problem last: where the eye lands.
        headline, *details = message.strip().splitlines()
        for line in details:
            console.print(f"  {escape(line.strip())}")
        console.print(f"[red]error[/] in {step}: {escape(headline)}")
        raise typer.Exit(EXIT_FAILED) from None
    console.print(f"[green]done[/] {step} ({time.perf_counter() - started:.1f} s)")
    return result


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Keep the libraries' notices for their developers out of the user's terminal."""
    import warnings

    with warnings.catch_warnings():
        import feast  # noqa: F401 - its import puts its own filters in front: import it first

        # Feast turns deprecation warnings back on ("once"); Python hides them by default.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", "On demand feature view", RuntimeWarning)
        warnings.filterwarnings("ignore", "Hint: Inferred schema contains integer", UserWarning)
        yield
