"""Feast's run-time type checks, instrumented on first call instead of at import.

Feast decorates its classes with typeguard's `@typechecked`, which parses and compiles the
whole module again for every method it instruments (typeguard issue #468). That is 2.5 s of
CPU in every process that imports feast on this machine: each flow run, `mlops serve`, each
CLI command that reads features. Here a feast function is instrumented the first time it is
called, with typeguard's own `instrument`: the same checks, paid only for what a process calls.
Other packages' `@typechecked` functions are instrumented at import, as typeguard does.

`mlops_flows/__init__.py` installs `BeforeFeast`, which puts the deferral in place when feast
is first imported: processes that never import feast do not import typeguard either.
"""

from __future__ import annotations

import functools
import importlib.abc
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

DEFERRED_PACKAGE = "feast."


def instrument_on_first_call(function: Any) -> Any:
    """What typeguard's `typechecked` puts in place of `function`: for feast, a wrapper that
    instruments it on its first call (once) and calls the instrumented function."""
    if not str(getattr(function, "__module__", "")).startswith(DEFERRED_PACKAGE):
        return _instrument_now(function)
    instrumented: Callable[..., Any] | None = None

    @functools.wraps(function)
    def checked(*args: Any, **kwargs: Any) -> Any:
        nonlocal instrumented
        if instrumented is None:
            made = _instrument_now(function)
            # A string is typeguard's reason it could not instrument: it keeps the function.
            instrumented = function if isinstance(made, str) else made
        return instrumented(*args, **kwargs)

    return checked


def _instrument_now(function: Any) -> Any:
    """typeguard's own `instrument`, as it was before `defer()` replaced it."""
    return _original(function)


_original: Callable[[Any], Any]


def defer() -> None:
    """Replace typeguard's `instrument` with `instrument_on_first_call` (once)."""
    global _original
    from typeguard import _decorators

    if _decorators.instrument is not instrument_on_first_call:
        _original = _decorators.instrument
        _decorators.instrument = instrument_on_first_call  # type: ignore[assignment]


class BeforeFeast(importlib.abc.MetaPathFinder):
    """On the first import of feast, `defer()`, then step aside; finds no module itself."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if fullname == "feast":
            sys.meta_path.remove(self)
            defer()


def install() -> None:
    """`defer()` now if feast is imported already, else on its first import."""
    if "feast" in sys.modules:
        defer()
    elif not any(isinstance(finder, BeforeFeast) for finder in sys.meta_path):
        sys.meta_path.insert(0, BeforeFeast())
