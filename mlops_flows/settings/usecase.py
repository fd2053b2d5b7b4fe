"""A use case is one reviewable file: `usecases/<model>.toml` in the project.

Its tables are settings groups (`[features]`, `[gates]`, ...), validated by the same models as
the environment. It sits between the environment and the defaults: `MLOPS_*` variables still
override any value in it. Which file: `MLOPS_MODEL` (the CLI's `--model`), or the only file of
the folder.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsError

from mlops_flows.errors import MlopsError

# What makes a model itself; the servers, the stack and the serving address are the project's.
USE_CASE_GROUPS = ("features", "expectations", "training", "gates", "monitoring", "card")
MLFLOW_KEYS = ("model_name", "experiment")  # what [mlflow] may set; both default to the name
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
SUFFIX = ".toml"
# What only a use case can say: the library has no default for them.
REQUIRED = (
    ("features", "feature_service"),
    ("features", "entity_key"),
    ("features", "label_column"),
    ("mlflow", "model_name"),
)


class UseCaseError(MlopsError):
    """A run of a model without a use case that says what the model is."""


class UseCaseSource(PydanticBaseSettingsSource):
    """The chosen use case's file as settings values, plus `model`, and the registered model's
    name defaulting to the use case's."""

    def __init__(self, settings_cls: type[BaseSettings], init_kwargs: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.values = read(*_selection(init_kwargs))

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False  # unused: __call__ gives all

    def __call__(self) -> dict[str, Any]:
        return self.values


def _selection(init_kwargs: dict[str, Any]) -> tuple[Path, str | None]:
    """The use-case folder and the model named, from keywords or the environment."""

    def given(name: str) -> Any:
        return init_kwargs.get(name) or os.environ.get(f"MLOPS_{name.upper()}") or None

    project = Path(given("project_dir") or Path.cwd()).expanduser()
    folder = Path(given("usecases_dir") or "usecases").expanduser()
    return (folder if folder.is_absolute() else project / folder), given("model")


def names(folder: Path) -> list[str]:
    """The use cases a folder holds, by name."""
    return sorted(path.stem for path in folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def read(folder: Path, model: str | None) -> dict[str, Any]:
    """The settings values of the use case named (or the only one); empty without one."""
    found = names(folder)
    if model is None:
        if not found:
            return {}
        if len(found) > 1:
            raise SettingsError(
                f"{folder} holds several use cases ({', '.join(found)}): name one with "
                "`mlops --model NAME` or MLOPS_MODEL."
            )
        model = found[0]
    if not MODEL_NAME.match(model):
        raise SettingsError(
            f"model name {model!r}: letters, digits, '_' and '-' only, starting with a letter or "
            "digit (it names the use-case file, the registered model and its lock)."
        )
    named = {"model": model, "mlflow": {"model_name": model}}
    path = folder / f"{model}{SUFFIX}"
    if not path.is_file():
        if found:
            raise SettingsError(f"no use case {model!r}: {folder} holds {', '.join(found)}.")
        return named
    tables = _tables(path)
    return tables | named | {"mlflow": named["mlflow"] | tables.get("mlflow", {})}


def _tables(path: Path) -> dict[str, Any]:
    """The file's tables, checked for what a use case may set (the values are checked by the
    settings models)."""
    try:
        tables = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"use case {path} is not readable TOML: {error}") from None
    allowed = (*USE_CASE_GROUPS, "mlflow")
    unknown = sorted(set(tables) - set(allowed))
    if unknown or not all(isinstance(tables[name], dict) for name in tables):
        raise SettingsError(
            f"use case {path}: {', '.join(unknown) or 'a key outside the tables'} is not a "
            f"use-case table; allowed: {', '.join(f'[{name}]' for name in allowed)}."
        )
    if set(tables.get("mlflow", {})) - set(MLFLOW_KEYS):
        raise SettingsError(
            f"use case {path}: [mlflow] may set {' and '.join(MLFLOW_KEYS)} only (the "
            "tracking server is the project's, not the model's)."
        )
    return tables
