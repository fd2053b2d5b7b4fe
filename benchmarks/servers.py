"""Servers the stages start: subprocesses on free loopback ports, polled until ready, always
stopped. The process handling is the end-to-end tests' harness (tests/e2e/stack.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.e2e.stack import BIN, Stack, base_environment, free_port, wait_until

__all__ = [
    "BIN",
    "Stack",
    "answers",
    "free_port",
    "library_environment",
    "prefect_server",
    "running",
    "wait_until",
]


def library_environment(workspace: Path) -> dict[str, str]:
    """This process's environment without Prefect or project settings, on `workspace`."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLOPS_"))}
    path = f"{BIN}{os.pathsep}{keep.get('PATH', '')}"  # servers spawn the venv's tools by name
    return keep | {"MLOPS_HOME": str(workspace), "PATH": path}


@contextmanager
def running(folder: Path, environment: dict[str, str] | None = None) -> Iterator[Stack]:
    """A Stack whose processes are all stopped when the block ends, even on failure."""
    folder.mkdir(parents=True, exist_ok=True)
    stack = Stack(folder, environment or base_environment(folder, folder / "workspace"))
    try:
        yield stack
    finally:
        stack.stop()


@contextmanager
def prefect_server(folder: Path) -> Iterator[Stack]:
    """A real `prefect server` for this run, healthy before the block starts, always stopped."""
    with running(folder) as stack:
        stack.start("server", [str(BIN / "prefect"), "server", "start"])
        wait_until(
            lambda: stack.check_alive("server") or answers(f"{stack.api_url}/health"),
            300,
            "the Prefect server",
        )
        yield stack


def answers(url: str) -> bool:
    """True when `url` answers 200."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
