"""Validate a frame against a Great Expectations suite kept as JSON; the outcome is a value."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from mlops_flows.errors import MlopsError

# great_expectations costs ~10 s to import, so it is imported inside functions only.
if TYPE_CHECKING:
    import pandas as pd
    from great_expectations import ExpectationSuite
    from great_expectations.core import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

EXAMPLES_SHOWN = 5
# GX adds the batch id to every expectation's kwargs; it says nothing about the expectation.
_NOISE_KWARGS = frozenset({"batch_id"})


@dataclass(frozen=True)
class FailedExpectation:
    """One expectation the frame did not meet, with what GX observed."""

    expectation_type: str
    column: str | None
    kwargs: dict[str, Any]
    observed: Any
    unexpected_count: int | None
    unexpected_examples: list[Any]
    error: str | None = None  # set when GX could not evaluate the expectation at all

    def describe(self) -> str:
        """One line: what was expected and what was found."""
        subject = f"column {self.column!r}" if self.column else "table"
        arguments = ", ".join(f"{k}={v!r}" for k, v in sorted(self.kwargs.items()) if k != "column")
        return f"{subject}: expected {self.expectation_type}({arguments}); found {self._found()}"

    def _found(self) -> str:
        """What GX saw, in the most specific words available."""
        if self.error is not None:
            return f"GX could not evaluate it: {self.error}"
        if self.unexpected_count is not None:
            shown = _jsonable(self.unexpected_examples[:EXAMPLES_SHOWN])
            return f"{self.unexpected_count} unexpected value(s), e.g. {shown!r}"
        return f"{_jsonable(self.observed)!r}"


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of validating one frame against one suite."""

    suite_name: str
    suite_digest: str
    success: bool
    evaluated: int
    row_count: int
    failed: tuple[FailedExpectation, ...]

    def summary(self) -> str:
        """Name every failed expectation and say what to do about it."""
        where = f"suite {self.suite_name!r} (sha256 {self.suite_digest[:12]})"
        if self.success:
            return (
                f"Data validation passed: {self.evaluated} expectations of {where} "
                f"on {self.row_count} rows."
            )
        headline = (
            f"Data validation failed: {len(self.failed)} of {self.evaluated} expectations of "
            f"{where} failed on {self.row_count} rows:"
        )
        advice = (
            "Fix the data upstream (sources or feature definitions) and rerun; if the change is "
            f"intended, update the suite {self.suite_name!r} in review instead."
        )
        failures = [f"  - {failure.describe()}" for failure in self.failed]
        return "\n".join([headline, *failures, advice])

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form, with numpy/pandas scalars and timestamps converted."""
        return {
            "suite_name": self.suite_name,
            "suite_digest": self.suite_digest,
            "success": self.success,
            "evaluated": self.evaluated,
            "row_count": self.row_count,
            "failed": [_failure_to_dict(failure) for failure in self.failed],
        }


class DataValidationError(MlopsError):
    """A frame did not meet its suite; `.result` holds every failed expectation."""

    def __init__(self, result: ValidationResult) -> None:
        super().__init__(result.summary())
        self.result = result


def suite_digest(path: Path) -> str:
    """Return the sha256 hex of the suite file's canonical JSON (sorted keys, no spaces)."""
    return _digest(_read_suite_json(path))


def load_suite(path: Path) -> ExpectationSuite:
    """Load a GX suite from its JSON file; raise naming the path if it is missing or invalid."""
    return _build_suite(_read_suite_json(path), path)


def validate_frame(frame: pd.DataFrame, suite_path: Path) -> ValidationResult:
    """Validate `frame` against the suite at `suite_path`; data problems never raise."""
    document = _read_suite_json(suite_path)
    suite = _build_suite(document, suite_path)
    outcome = _run_suite(frame, suite)
    failed = tuple(_failed_expectation(r) for r in _in_suite_order(outcome.results, suite))
    return ValidationResult(
        suite_name=suite.name,
        suite_digest=_digest(document),
        success=not failed,
        evaluated=len(outcome.results),
        row_count=len(frame),
        failed=failed,
    )


def _read_suite_json(path: Path) -> dict[str, Any]:
    """Parse a suite file into a dict, or raise an error that names the file."""
    if not path.is_file():
        raise FileNotFoundError(
            f"Expectation suite {path} does not exist; expected a GX suite JSON file there "
            "(see the `expectations/` folder)."
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Expectation suite {path} is not valid JSON: {error}") from error
    if not _looks_like_suite(document):
        raise ValueError(
            f"Expectation suite {path} is not a GX suite: expected a JSON object with a "
            "string `name` and a list `expectations`."
        )
    return document


def _looks_like_suite(document: Any) -> TypeGuard[dict[str, Any]]:
    """True for a JSON object with a string `name` and a list `expectations`."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("name"), str)
        and isinstance(document.get("expectations"), list)
    )


def _digest(document: Mapping[str, Any]) -> str:
    """Hash the canonical JSON form so formatting changes do not change the digest."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _build_suite(document: dict[str, Any], path: Path) -> ExpectationSuite:
    """Build the GX suite, refusing any expectation GX would silently drop."""
    import great_expectations as gx

    try:
        suite = gx.ExpectationSuite(**document)
    except (TypeError, ValueError) as error:
        raise ValueError(f"Expectation suite {path} is not a valid GX suite: {error}") from error
    # ExpectationSuite logs and skips invalid expectations instead of raising.
    if len(suite.expectations) != len(document["expectations"]):
        raise ValueError(
            f"Expectation suite {path}: GX accepted {len(suite.expectations)} of "
            f"{len(document['expectations'])} expectations; fix the invalid ones "
            "(GX logs the reason) before validating."
        )
    return suite


def _run_suite(frame: pd.DataFrame, suite: ExpectationSuite) -> ExpectationSuiteValidationResult:
    """Run the suite on the whole frame in a throwaway in-memory GX context."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # In-memory stores and no data docs site (the default ephemeral context names a temporary
    # folder for one), so nothing is ever written to disk.
    in_memory = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    context = gx.get_context(
        mode="ephemeral", project_config=DataContextConfig(store_backend_defaults=in_memory)
    )
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    name = f"frame-{uuid.uuid4().hex}"  # unique, so repeated calls never clash
    asset = context.data_sources.add_pandas(name).add_dataframe_asset(name)
    batch_definition = asset.add_batch_definition_whole_dataframe(name)
    batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
    return batch.validate(suite, result_format="SUMMARY")


def _in_suite_order(
    results: list[ExpectationValidationResult], suite: ExpectationSuite
) -> list[ExpectationValidationResult]:
    """The failed results, in the order the suite lists them (GX returns graph order)."""
    position = {_identity(e.configuration): i for i, e in enumerate(suite.expectations)}
    failed = [result for result in results if not result.success]
    return sorted(
        failed, key=lambda r: position.get(_identity(r.expectation_config), len(position))
    )


def _identity(config: ExpectationConfiguration | None) -> str:
    """A key naming one expectation by type and kwargs (without GX's batch id)."""
    if config is None:
        return ""
    kwargs = {k: v for k, v in config.kwargs.items() if k not in _NOISE_KWARGS}
    return json.dumps([config.type, kwargs], sort_keys=True, default=str)


def _failed_expectation(result: ExpectationValidationResult) -> FailedExpectation:
    """Turn one failed GX result, or one GX raised on, into a plain value."""
    config = result.expectation_config
    assert config is not None  # GX always attaches the configuration it ran
    details: dict[str, Any] = result.result or {}
    return FailedExpectation(
        expectation_type=config.type,
        column=config.kwargs.get("column"),
        kwargs={k: v for k, v in config.kwargs.items() if k not in _NOISE_KWARGS},
        observed=_observed(details),
        unexpected_count=_optional_int(details.get("unexpected_count")),
        unexpected_examples=list(details.get("partial_unexpected_list") or []),
        error=_error_message(result.exception_info or {}),
    )


def _error_message(exception_info: Mapping[str, Any]) -> str | None:
    """GX's exception message, if it raised while evaluating the expectation."""
    # Flat when the expectation raised; keyed by metric id when a metric it needs raised.
    if "raised_exception" in exception_info:
        entries: list[Any] = [exception_info]
    else:
        entries = list(exception_info.values())
    messages = {
        str(entry.get("exception_message"))
        for entry in entries
        if isinstance(entry, Mapping) and entry.get("raised_exception")
    }
    return "; ".join(sorted(messages)) or None


def _optional_int(value: Any) -> int | None:
    """A plain int from GX's count (sometimes a numpy integer), or None when absent."""
    return None if value is None else int(value)


def _observed(details: Mapping[str, Any]) -> Any:
    """The observed value; for a column-set mismatch, the missing and unexpected columns."""
    mismatched = (details.get("details") or {}).get("mismatched")
    return mismatched if mismatched else details.get("observed_value")


def _failure_to_dict(failure: FailedExpectation) -> dict[str, Any]:
    """JSON-ready form of one failed expectation."""
    return {
        "expectation_type": failure.expectation_type,
        "column": failure.column,
        "kwargs": _jsonable(failure.kwargs),
        "observed": _jsonable(failure.observed),
        "unexpected_count": _jsonable(failure.unexpected_count),
        "unexpected_examples": _jsonable(failure.unexpected_examples),
        "error": failure.error,
        "description": failure.describe(),
    }


def _jsonable(value: Any) -> Any:
    """Convert numpy/pandas scalars, timestamps and containers into plain JSON values."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            return None  # a missing value; JSON has no NaN
        return float(value) if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    # datetime, date and pandas Timestamp (NaT gives "NaT").
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalar: bool_, int64, float32, ...
        return _jsonable(value.item())
    return str(value)
