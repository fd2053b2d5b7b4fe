"""The one settings object: built at the entry point, passed down, never read from below.

The root model `Settings` is here; each group of settings is a model in a module by theme,
and every model is importable from `mlops_flows.settings`.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from mlops_flows.settings.card import CardSettings
from mlops_flows.settings.data import ExpectationSettings, FeatureSettings
from mlops_flows.settings.governance import GovernanceSettings, PromotionPolicy
from mlops_flows.settings.group import Group
from mlops_flows.settings.monitoring import MonitoringSettings
from mlops_flows.settings.orchestration import PrefectSettings, TaskRunnerKind
from mlops_flows.settings.servers import PostgresSettings, RedisSettings, StackSettings
from mlops_flows.settings.serving import ServingSettings
from mlops_flows.settings.tracking import MlflowSettings
from mlops_flows.settings.training import GateSettings, TrainingSettings
from mlops_flows.settings.usecase import REQUIRED, UseCaseError, UseCaseSource

__all__ = [
    "DERIVED_FEAST_VARIABLES",
    "ENV_PREFIX",
    "CardSettings",
    "ExpectationSettings",
    "FeatureSettings",
    "GateSettings",
    "GovernanceSettings",
    "Group",
    "MlflowSettings",
    "MonitoringSettings",
    "PostgresSettings",
    "PrefectSettings",
    "Profile",
    "PromotionPolicy",
    "RedisSettings",
    "ServingSettings",
    "Settings",
    "StackSettings",
    "TaskRunnerKind",
    "TrainingSettings",
    "known_variables",
]

ENV_PREFIX = "MLOPS_"


class Profile(StrEnum):
    """Where state lives: embedded files in the workspace, or servers (PostgreSQL, Redis)."""

    LOCAL = "local"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Root settings; environment variables use the prefix MLOPS_ and `__` between groups. The
    chosen use case's file (`usecases/<model>.toml`) comes between them and the defaults."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs = getattr(init_settings, "init_kwargs", {})
        return init_settings, env_settings, UseCaseSource(settings_cls, init_kwargs)

    model: str | None = Field(
        default=None,
        description="The use case a command acts on: `usecases/<model>.toml` in the project "
        "(the CLI's `--model`). Unset: the folder's only use case.",
    )
    usecases_dir: Path = Field(
        default=Path("usecases"),
        description="Folder of the use-case files, one `<model>.toml` per model.",
    )
    home: Path = Field(
        default=Path(".mlops"),
        description="Workspace folder holding all local state; delete it to reset.",
    )
    project_dir: Path = Field(
        default_factory=Path.cwd,
        description="The project folder (default: the current one): every relative path "
        "setting (the Feast repository, the suites, the workspace) and the lock file are found "
        "under it. On a worker, prefect.yaml's pull step starts each run in it (as "
        "MLOPS_PROJECT_DIR).",
    )
    profile: Profile = Field(
        default=Profile.LOCAL,
        description="`local`: SQLite and files in the workspace, temporary Prefect server; "
        "`production`: MLflow and Prefect servers on PostgreSQL, Feast SQL registry on "
        "PostgreSQL and online store on Redis (`mlops stack up`).",
    )
    promotion_policy: PromotionPolicy = Field(
        default=PromotionPolicy.AUTO,
        description="`auto`: passing gates promote to champion; `manual`: a person approves. "
        "Unset, it is `auto` on the local profile and `manual` on the production profile.",
    )
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    expectations: ExpectationSettings = Field(default_factory=ExpectationSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    gates: GateSettings = Field(default_factory=GateSettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    stack: StackSettings = Field(default_factory=StackSettings)
    governance: GovernanceSettings = Field(default_factory=GovernanceSettings)
    card: CardSettings = Field(default_factory=CardSettings)

    @model_validator(mode="after")
    def _reject_unknown_variables(self) -> Settings:
        # pydantic-settings ignores MLOPS_* variables that match no field: a typo would
        # silently leave a gate or the promotion policy at its default.
        unknown = sorted(
            name
            for name in os.environ
            if name.upper().startswith(ENV_PREFIX) and name.upper() not in known_variables()
        )
        if unknown:
            raise ValueError(
                f"unknown setting(s) {', '.join(unknown)}: no such field. The settings are "
                "listed in docs/settings.md."
            )
        return self

    @model_validator(mode="after")
    def _paths_under_the_project(self) -> Settings:
        # Relative to the project folder, not to wherever the library is installed.
        self.project_dir = self.project_dir.expanduser().resolve()
        for group in (self, *(v for v in vars(self).values() if isinstance(v, Group))):
            for name, value in vars(group).items():
                if isinstance(value, Path) and not value.expanduser().is_absolute():
                    setattr(group, name, self.project_dir / value)
        return self

    @model_validator(mode="after")
    def _experiment_named_after_the_model(self) -> Settings:
        self.mlflow.experiment = self.mlflow.experiment or self.mlflow.model_name
        return self

    @model_validator(mode="after")
    def _manual_promotion_in_production(self) -> Settings:
        if self.is_production and "promotion_policy" not in self.model_fields_set:
            self.promotion_policy = PromotionPolicy.MANUAL
        return self

    def require_use_case(self) -> None:
        """A UseCaseError naming what is missing, before anything of a model's run is done."""
        missing = [
            (group, name) for group, name in REQUIRED if not getattr(getattr(self, group), name)
        ]
        if not missing:
            return
        folder = self.usecases_dir
        told = (
            f"use case {self.model!r} does not set"
            if self.model
            else f"no use case in {folder}: nothing sets"
        )
        variables = ", ".join(f"{ENV_PREFIX}{group}__{name}".upper() for group, name in missing)
        raise UseCaseError(
            f"{told} {', '.join(f'{group}.{name}' for group, name in missing)}: write them in "
            f"{folder}/<model>.toml (docs/settings.md#use-cases), or set {variables}."
        )

    def population_view(self, chosen: str | None = None) -> str:
        """The feature view whose source lists the entities of a batch: the run's choice, else
        the use case's; a UseCaseError when neither names one."""
        view = chosen or self.features.population_view
        if not view:
            raise UseCaseError(
                "no population view: set `population_view` in the use case's [features] (the "
                "feature view whose source file lists the entities to score), or pass "
                "population_view to the run."
            )
        return view

    @property
    def home_resolved(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def is_production(self) -> bool:
        return self.profile == Profile.PRODUCTION

    @property
    def tracking_uri(self) -> str:
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        if self.is_production:
            return f"http://{self.mlflow.server_host}:{self.mlflow.server_port}"
        return f"sqlite:///{self.home_resolved / 'mlflow' / 'mlflow.db'}"

    @property
    def feature_store_yaml(self) -> Path:
        if self.features.store_yaml:
            return self.features.store_yaml
        folder = self.features.repo_path
        return (
            folder / "production" / "feature_store.yaml"
            if self.is_production
            else (folder / "feature_store.yaml")
        )

    @property
    def labels_path(self) -> Path:
        return self.features.labels_path or self.home_resolved / "data" / "labels.parquet"

    def suite_path(self, suite: str) -> Path:
        return self.expectations.folder / f"{suite}.json"

    def library_environment(self, scoring: bool = False) -> dict[str, str]:
        """Environment the libraries read: telemetry off, side files inside the workspace; in
        production the MLflow login of this process's role (`scoring`: the scoring service)."""
        home = self.home_resolved
        return {
            "MLOPS_HOME": str(home),  # features/feature_store.yaml and definitions read it
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_UV_AUTO_DETECT": "false",  # requirements are given explicitly
            "MLFLOW_LOG_UV_FILES": "false",  # the lock file's digest is in the lineage
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # bars flood service and worker logs
            "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.mlflow.http_timeout_seconds),
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.mlflow.http_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(self.mlflow.http_backoff_factor),
            "DO_NOT_TRACK": "1",
            "GX_ANALYTICS_ENABLED": "false",
            "FEAST_USAGE": "False",
            "PREFECT_HOME": str(home / "prefect"),  # Workspace.prefect
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(
                self.prefect.ephemeral_startup_timeout_seconds
            ),
            "MPLCONFIGDIR": str(home / "cache" / "matplotlib"),
            "MPLBACKEND": "Agg",
            # Feast's own switch: FeatureStore(repo_path=...) and the Feast CLI read it.
            "FEAST_FS_YAML_FILE_PATH": str(self.feature_store_yaml),
        } | (self._production_environment(scoring) if self.is_production else {})

    def _production_environment(self, scoring: bool) -> dict[str, str]:
        """What features/production/feature_store.yaml expands, and the MLflow and Prefect
        logins."""
        login = {}
        account = self.mlflow.login(scoring)
        if account is not None:
            login = {
                "MLFLOW_TRACKING_USERNAME": account[0],
                "MLFLOW_TRACKING_PASSWORD": account[1].get_secret_value(),
            }
        if self.prefect.auth_string is not None:
            login["PREFECT_API_AUTH_STRING"] = self.prefect.auth_string.get_secret_value()
        return login | {
            "FEAST_PROJECT_NAME": self.features.project,
            "FEAST_SQL_REGISTRY_URL": self.postgres.url("feast", "psycopg"),
            "FEAST_REDIS_CONNECTION_STRING": self.redis.connection_string(),
        }

    def export_library_environment(self, scoring: bool = False) -> None:
        """Set the libraries' environment at the entry point; values the user set win."""
        for name, value in self.library_environment(scoring).items():
            os.environ.setdefault(name, value)
        # The workspace and tracking store are ours to decide, not a stale shell's.
        os.environ["MLOPS_HOME"] = str(self.home_resolved)
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
        derived = self.library_environment()
        for name in ("FEAST_FS_YAML_FILE_PATH", *DERIVED_FEAST_VARIABLES):
            if name in derived:
                os.environ[name] = derived[name]


# What the production feature_store.yaml expands: derived from MLOPS_* settings, so a stale
# value in the shell must not win over them.
DERIVED_FEAST_VARIABLES = (
    "FEAST_PROJECT_NAME",
    "FEAST_SQL_REGISTRY_URL",
    "FEAST_REDIS_CONNECTION_STRING",
)


def known_variables() -> set[str]:
    """Every environment variable name the settings read (upper case)."""
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"{ENV_PREFIX}{name}".upper())
        group = field.annotation
        if isinstance(group, type) and issubclass(group, Group):
            names |= {f"{ENV_PREFIX}{name}__{sub}".upper() for sub in group.model_fields}
    return names
