"""Feast's run-time type checks, instrumented on first call instead of at import.

Feast decorates its classes with typeguard's `@typechecked`, which parses and compiles the
whole module again for every method it instruments (typeguard issue #468). That is 2.8 s of
CPU in every process that imports feast on this machine: each flow run, `mlops serve`, each
CLI command that reads features. Here a feast function is instrumented the first time it is
called, with typeguard's own `instrument`: the same checks, paid only for what a process calls.
Other packages' `@typechecked` functions are instrumented at import, as typeguard does.

Imported first by `mlops_flows/__init__.py`, so it holds before any feast module is imported.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from typeguard import _decorators

_instrument_now = _decorators.instrument
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


_decorators.instrument = instrument_on_first_call  # type: ignore[assignment]
