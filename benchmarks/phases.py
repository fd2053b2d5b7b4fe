"""Where a flow's time goes: wrap named functions of the plain modules and add up their time."""

from __future__ import annotations

import functools
import importlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

# (module, function, label): the steps of the training flow, in flow order.
TRAINING_PHASES = (
    ("mlops_flows.adapters.features", "build_training_set", "build (Feast)"),
    ("mlops_flows.steps.data_checks", "validate_frame", "validate (GX)"),
    ("mlops_flows.logic.training", "fit_model", "fit"),
    ("mlops_flows.logic.training", "predict_scores", "predict"),
    ("mlops_flows.registry.versions", "load_champion", "load champion"),
    ("mlops_flows.steps.training", "evaluate_gates", "gates (bootstrap)"),
    ("mlops_flows.logic.plots", "permutation_importances", "permutation importance"),
    ("mlops_flows.adapters.features", "frame_digest", "training-set digest"),
    ("mlops_flows.adapters.tracking", "log_training_run", "MLflow run (incl. log_model)"),
    ("mlflow.sklearn", "log_model", "  of which log_model"),
    ("mlops_flows.registry.versions", "register_version", "register version"),
)


@dataclass
class Phases:
    """Seconds spent per phase, and the phases running now (innermost last)."""

    spent: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    active: list[str] = field(default_factory=list)

    def current(self) -> str:
        return self.active[-1].strip() if self.active else "other"


@contextmanager
def phase_times(phases: tuple[tuple[str, str, str], ...]) -> Iterator[Phases]:
    """Time spent in each wrapped function while the block runs (originals restored)."""
    clock = Phases()
    originals: list[tuple[Any, str, Callable[..., Any]]] = []
    for module_name, attribute, label in phases:
        module = importlib.import_module(module_name)
        original = getattr(module, attribute)
        originals.append((module, attribute, original))
        setattr(module, attribute, _timed(original, label, clock))
    try:
        yield clock
    finally:
        for module, attribute, original in originals:
            setattr(module, attribute, original)


def _timed(function: Callable[..., Any], label: str, clock: Phases) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        clock.active.append(label)
        try:
            return function(*args, **kwargs)
        finally:
            clock.active.pop()
            clock.spent[label] += time.perf_counter() - started

    return wrapper


def describe(spent: dict[str, float], total: float) -> str:
    """'label 1.2 s, ...; the rest (orchestration, artifacts, events) 0.4 s' for a note."""
    counted = sum(v for k, v in spent.items() if not k.startswith(" "))
    parts = [f"{label.strip()} {seconds:.2f} s" for label, seconds in spent.items()]
    rest = total - counted
    return f"{', '.join(parts)}; the rest (Prefect, artifacts, events, plots) {rest:.2f} s"
