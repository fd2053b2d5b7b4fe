"""Feast's typeguard checks are instrumented on first call (mlops_flows/lazy_checks.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typeguard import TypeCheckError, typechecked

from mlops_flows import lazy_checks

PROBE = """
from typeguard import typechecked


@typechecked
class Probe:
    def twice(self, value: int) -> int:
        return 2 * value
"""


@pytest.fixture
def feast_module(tmp_path: Path) -> Iterator[Any]:
    """A module named as one of feast's, with a `@typechecked` class."""
    name = "feast.lazy_checks_probe"
    source = tmp_path / "probe.py"
    source.write_text(PROBE)
    spec = importlib.util.spec_from_file_location(name, source)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        yield module, spec
    finally:
        del sys.modules[name]


def test_a_feast_function_is_instrumented_on_its_first_call_only(
    feast_module: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    instrumented: list[str] = []
    now = lazy_checks._instrument_now

    def counted(function: Any) -> Any:
        instrumented.append(function.__qualname__)
        return now(function)

    monkeypatch.setattr(lazy_checks, "_instrument_now", counted)
    module, spec = feast_module
    spec.loader.exec_module(module)
    assert instrumented == []  # nothing at import

    probe = module.Probe()
    assert probe.twice(3) == 6
    with pytest.raises(TypeCheckError, match='argument "value"'):
        probe.twice("3")
    assert instrumented == ["Probe.twice"]  # once, on the first call


def test_feasts_own_checks_still_hold() -> None:
    import feast

    with pytest.raises(TypeCheckError, match='argument "name"'):
        feast.Entity(name=5, join_keys=["id"])  # type: ignore[arg-type]


def test_other_packages_functions_are_instrumented_at_decoration() -> None:
    @typechecked
    def twice(value: int) -> int:
        return 2 * value

    with pytest.raises(TypeCheckError, match='argument "value"'):
        twice("3")  # type: ignore[arg-type]


def test_a_process_that_never_imports_feast_does_not_import_typeguard() -> None:
    script = "import sys, mlops_flows.cli.app; print('typeguard' in sys.modules)"
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert found.stdout.strip() == "False", found.stdout + found.stderr
