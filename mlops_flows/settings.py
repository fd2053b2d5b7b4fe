"""The one settings object: built at the entry point, passed down, never read from below."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "MLOPS_"


class PromotionPolicy(StrEnum):
    """Who moves the `champion` alias once a version has passed its gates."""

    AUTO = "auto"
    MANUAL = "manual"


class Profile(StrEnum):
    """Where state lives: embedded files in the workspace, or servers (PostgreSQL, Redis)."""

    LOCAL = "local"
    PRODUCTION = "production"


class TaskRunnerKind(StrEnum):
    """How a flow's fanned-out tasks run: threads in the flow's process, or on Dask."""

    THREAD = "thread"
    DASK = "dask"


class Group(BaseModel):
    """A settings group: an unknown key is a typo, not something to ignore."""

    model_config = ConfigDict(extra="forbid")


class FeatureSettings(Group):
    """Where the Feast repository is and which FeatureService is the model's contract."""

    repo_path: Path = Field(
        default=Path("features"),
        description="Folder of the Feast feature repository (holds feature_store.yaml).",
    )
    feature_service: str = Field(
        default="churn_model_v1",
        description="Versioned Feast FeatureService the model is trained and served with.",
    )
    entity_key: str = Field(default="customer_id", description="Join key of the entity.")
    timestamp_column: str = Field(
        default="event_timestamp", description="Column holding the label (prediction) time."
    )
    label_column: str = Field(default="churned", description="Column holding the 0/1 label.")
    labels_path: Path | None = Field(
        default=None,
        description="Parquet file of labels (entity key, timestamp, label); empty means "
        "`data/labels.parquet` in the workspace, where `mlops simulate` writes it.",
    )
    store_yaml: Path | None = Field(
        default=None,
        description="Feast configuration file; empty means `feature_store.yaml` in the "
        "repository (profile local) or `production/feature_store.yaml` (profile production).",
    )
    project: str = Field(
        default="churn",
        pattern=r"^[a-zA-Z0-9_]+$",
        description="Feast project of the production file (the local file names `churn`): "
        "rows in the SQL registry and keys in Redis are scoped by it.",
    )


class ExpectationSettings(Group):
    """Great Expectations suites kept as reviewable JSON files."""

    folder: Path = Field(
        default=Path("expectations"), description="Folder holding the GX suite JSON files."
    )
    training_suite: str = Field(
        default="training_set", description="Suite file (without .json) for training sets."
    )
    scoring_suite: str = Field(
        default="scoring_set", description="Suite file (without .json) for scoring sets."
    )


class MlflowSettings(Group):
    """MLflow tracking and registry."""

    tracking_uri: str | None = Field(
        default=None,
        description="Tracking URI; empty means a SQLite store inside the workspace.",
    )
    experiment: str = Field(default="churn", description="Experiment that holds training runs.")
    model_name: str = Field(default="churn", description="Registered model of this use case.")
    http_timeout_seconds: int = Field(
        default=10, description="Per-request timeout towards a tracking server."
    )
    http_max_retries: int = Field(
        default=1, description="Retries towards a tracking server (its default stalls minutes)."
    )
    http_backoff_factor: int = Field(
        default=1,
        ge=0,
        description="Seconds of the exponential back-off between those retries (MLflow's "
        "default of 2 makes a dead server take longer to report).",
    )
    server_host: str = Field(
        default="127.0.0.1", description="Host `mlops stack up` binds the tracking server to."
    )
    server_port: int = Field(default=5000, description="Port of the tracking server.")
    admin_username: str = Field(
        default="admin", description="Admin user of the tracking server's basic-auth app."
    )
    admin_password: SecretStr | None = Field(
        default=None,
        description="Password of that admin user (12 characters or more; the stack refuses "
        "to start without one or with a well-known default). Only `mlops stack up` uses it: to "
        "create the role accounts below.",
    )
    governance_username: str = Field(
        default="mlops-governance",
        description="The account of the worker and of `mlops` commands: it creates the "
        "experiments and the registered model, so it alone (besides the admin) may write them "
        "and move their aliases.",
    )
    governance_password: SecretStr | None = Field(
        default=None,
        description="Its password (12 characters or more; `mlops stack up` creates or updates "
        "the account with it).",
    )
    scoring_username: str = Field(
        default="mlops-scoring",
        description="The account of `mlops serve`: it reads, as every account does by default "
        "(MLflow's default permission READ), and writes nothing.",
    )
    scoring_password: SecretStr | None = Field(
        default=None, description="Its password (12 characters or more; `mlops stack up` too)."
    )
    username: str | None = Field(
        default=None,
        description="A person's own MLflow login: when set with `password`, every command uses "
        "it instead of the role accounts (read-only unless the admin granted more).",
    )
    password: SecretStr | None = Field(default=None, description="Its password.")

    def login(self, scoring: bool = False) -> tuple[str, SecretStr] | None:
        """The account this process logs in with: a person's own, else the scoring service's
        (for `mlops serve`) or the governance account's."""
        if self.username and self.password:
            return self.username, self.password
        if scoring and self.scoring_password:
            return self.scoring_username, self.scoring_password
        if self.governance_password:
            return self.governance_username, self.governance_password
        return None


class TrainingSettings(Group):
    """Defaults of a training run; each can be overridden per run by a flow parameter."""

    seed: int = Field(default=42, description="Seed of every random source in training.")
    threads: int = Field(
        default=1,
        ge=1,
        description="OpenMP threads for fit and predict; on 2 cores one thread fitted the demo "
        "9x faster than the default (threads contend), raise it on bigger machines.",
    )
    window_days: int = Field(default=84, description="Days of labels used to train and test.")
    holdout_days: int = Field(
        default=21, description="The last days of the window kept apart as holdout."
    )
    train_metric_rows: int = Field(
        default=100_000,
        ge=1000,
        description="Most training rows scored for the train metrics (a seeded sample above it): "
        "scoring a million rows again costs more than the estimate is worth.",
    )
    retrain_window_days: int = Field(
        default=42,
        ge=14,
        description="Days of labels a drift-triggered retraining uses: recent data only, so "
        "that the new regime outweighs the old one.",
    )
    max_iter: int = Field(default=200, description="Boosting iterations.")
    learning_rate: float = Field(default=0.08, description="Boosting learning rate.")
    max_leaf_nodes: int = Field(default=31, description="Leaves per tree.")
    min_samples_leaf: int = Field(default=40, description="Minimum rows in a leaf.")


class GateSettings(Group):
    """Thresholds a candidate must meet before it may serve."""

    min_roc_auc: float = Field(default=0.70, description="Lowest holdout ROC AUC accepted.")
    max_log_loss: float = Field(default=0.60, description="Highest holdout log loss accepted.")
    max_calibration_error: float = Field(
        default=0.08, description="Highest expected calibration error (10 bins) accepted."
    )
    non_inferiority_margin: float = Field(
        default=0.01,
        description="How much lower than the champion's ROC AUC the candidate may be "
        "(lower bound of the paired bootstrap interval of the difference).",
    )
    bootstrap_resamples: int = Field(default=300, description="Paired bootstrap resamples.")
    bootstrap_confidence: float = Field(default=0.95, description="Bootstrap interval level.")
    slice_columns: tuple[str, ...] = Field(
        default=("plan", "region"), description="Columns whose values form evaluation slices."
    )
    min_slice_size: int = Field(
        default=200, description="Slices with fewer holdout rows are reported, not gated."
    )
    slice_margin: float = Field(
        default=0.03, description="How much a slice's ROC AUC may fall below the champion's."
    )


class ServingSettings(Group):
    """The online scoring service (`mlops serve`)."""

    host: str = Field(default="127.0.0.1", description="Address the service binds.")
    port: int = Field(default=8000, description="Port the service binds.")
    url: str | None = Field(
        default=None,
        description="Base URL at which the flows reach the service (reload, smoke check); empty "
        "means http://<host>:<port>. A setting of the worker, never a run parameter.",
    )
    reload_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin endpoints; empty means one is generated at start "
        "and written to `serving/reload-token` (mode 0600) in the workspace.",
    )
    max_batch_size: int = Field(default=100, ge=1, description="Most entity ids in one request.")
    max_body_bytes: int = Field(
        default=65536,
        ge=1024,
        description="Largest request body the service reads (413 above, before parsing it).",
    )
    alias_poll_seconds: float = Field(
        default=10.0, gt=0, description="How often the service checks whether `champion` moved."
    )
    request_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Timeout of the flows' calls to the service."
    )

    def base_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


class MonitoringSettings(Group):
    """Drift checks: fixed statistical tests, so verdicts do not change with sample size."""

    window_days: int = Field(default=7, ge=1, description="Days of recent data compared.")
    min_rows: int = Field(
        default=500, ge=1, description="Fewer current rows than this is 'not enough data'."
    )
    sample_rows: int = Field(
        default=50_000, ge=100, description="Seeded cap on rows per side, so millions stay fast."
    )
    numerical_method: str = Field(default="ks", description="Evidently test for numbers.")
    numerical_threshold: float = Field(
        default=0.01, description="p-value below which a numerical column drifted."
    )
    categorical_method: str = Field(
        default="jensenshannon",
        description="Evidently test for categories. Not `chisquare`: it takes the reference "
        "shares as exact and, with 5k reference vs 50k current rows, called drift on 65% of "
        "unchanged samples.",
    )
    categorical_threshold: float = Field(
        default=0.1, description="Jensen-Shannon distance above which a category mix drifted."
    )
    drift_share: float = Field(
        default=0.3, gt=0, le=1, description="Share of drifted columns that is dataset drift."
    )
    max_roc_auc_drop: float = Field(
        default=0.05,
        description="Drop of ROC AUC on labelled recent data, against the champion's holdout, "
        "that counts as drift (performance decay).",
    )
    seed: int = Field(default=42, description="Seed of the row sampling.")
    segment_column: str | None = Field(
        default="plan",
        description="Categorical feature whose values are checked for drift one by one "
        "(reported per segment, fanned out on the task runner); empty turns it off.",
    )


class PrefectSettings(Group):
    """How local runs reach a Prefect API."""

    api_url: str | None = Field(
        default=None,
        description="Prefect API to use; empty means a local `mlops server` if one is up, "
        "else a temporary server for the run.",
    )
    server_host: str = Field(default="127.0.0.1", description="Host `mlops server` binds.")
    server_port: int = Field(default=4200, description="Port `mlops server` binds.")
    auth_string: SecretStr | None = Field(
        default=None,
        description="`user:password` that the production Prefect server asks of every API call "
        "(basic auth; `mlops stack up` refuses to start without one whose password has 12 "
        "characters or more). The CLI and flows send it as PREFECT_API_AUTH_STRING; give workers "
        "and `prefect deploy` PREFECT_API_AUTH_STRING too.",
    )
    ephemeral_startup_timeout_seconds: int = Field(
        default=120, description="Time a temporary server may take to start on a slow machine."
    )
    task_runner: TaskRunnerKind = Field(
        default=TaskRunnerKind.THREAD,
        description="`thread`: fanned-out tasks (per-segment drift) run on threads; `dask`: on "
        "a Dask cluster (a local one bound to 127.0.0.1, or `dask_address`).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Scheduler of an existing Dask cluster (`tcp://host:8786`); empty means a "
        "temporary local cluster for each fan-out.",
    )
    dask_workers: int = Field(
        default=2, ge=1, description="Worker processes of the temporary local Dask cluster."
    )


class PostgresSettings(Group):
    """The PostgreSQL server of the production profile (MLflow, Prefect, Feast registry)."""

    host: str = Field(default="127.0.0.1", description="PostgreSQL host.")
    port: int = Field(default=5432, description="PostgreSQL port.")
    user: str = Field(default="postgres", description="PostgreSQL user.")
    password: SecretStr | None = Field(
        default=None, description="PostgreSQL password; empty for trust or peer auth."
    )
    database_prefix: str = Field(
        default="mlops",
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Databases `<prefix>_mlflow`, `<prefix>_prefect` and `<prefix>_feast` "
        "(created by `mlops stack up` when missing).",
    )

    def database(self, service: str) -> str:
        return f"{self.database_prefix}_{service}"

    def url(self, service: str, driver: str) -> str:
        """SQLAlchemy URL of one service's database; it holds the password: never log it."""
        from urllib.parse import quote

        secret = f":{quote(self.password.get_secret_value(), safe='')}" if self.password else ""
        credentials = f"{quote(self.user, safe='')}{secret}"
        return (
            f"postgresql+{driver}://{credentials}@{self.host}:{self.port}/{self.database(service)}"
        )


class RedisSettings(Group):
    """The Redis server of the production profile (Feast online store)."""

    host: str = Field(default="127.0.0.1", description="Redis host.")
    port: int = Field(default=6379, description="Redis port.")
    db: int = Field(default=0, ge=0, description="Redis database number.")
    password: SecretStr | None = Field(default=None, description="Redis password, if any.")

    def connection_string(self) -> str:
        """Feast's `host:port,db=N[,password=...]`; it holds the password: never log it."""
        secret = f",password={self.password.get_secret_value()}" if self.password else ""
        return f"{self.host}:{self.port},db={self.db}{secret}"


class StackSettings(Group):
    """`mlops stack up|down|status`: the servers of the production profile on this machine."""

    startup_timeout_seconds: float = Field(
        default=240, gt=0, description="Time each server may take to answer its health check."
    )


class GovernanceSettings(Group):
    """Approval before production, the audit history and the registry lock."""

    approval_timeout_seconds: int = Field(
        default=72 * 3600,
        ge=1,
        description="How long a challenger waits for a decision under the manual policy; a "
        "timeout counts as rejected.",
    )
    approval_poll_seconds: int = Field(
        default=5, ge=1, description="How often a paused local approval run looks for a decision."
    )
    lock_timeout_seconds: float = Field(
        default=120,
        gt=0,
        description="How long a promotion or rollback waits for the registry lock (a Prefect "
        "global concurrency limit named `mlops-registry-<model>`).",
    )
    approvers_file: Path | None = Field(
        default=None,
        description="Who may decide on an approval: one `<name> ssh-ed25519 AAAA...` line per "
        "person (ssh's allowed_signers format). With it, a decision counts only if signed by the "
        "key listed for its approver (`mlops approve|reject --key`), and the history records "
        "`<name> (key SHA256:...)`; without it the approver is free text. Required by the "
        "approval flow in the production profile.",
    )
    approver_key_file: Path | None = Field(
        default=None,
        description="Your own OpenSSH Ed25519 private key, with which `mlops approve|reject` "
        "signs your decision (the `--key` option's default).",
    )
    signing_key_file: Path | None = Field(
        default=None,
        description="The governance key: an unencrypted OpenSSH Ed25519 private key "
        "(`ssh-keygen -t ed25519 -N '' -f governance-key`) that signs every audit-history entry. "
        "Only the processes that decide hold it (the worker, `mlops` commands that promote); "
        "required there in the production profile.",
    )
    public_key: str | None = Field(
        default=None,
        description="The governance key's public line (`ssh-ed25519 AAAA...`, the .pub file). "
        "Readers trust only entries it verifies: in the production profile the service, batch "
        "scoring and the flows refuse a champion whose last move it does not verify, and "
        "`mlops history --verify` checks every entry with it.",
    )


class Settings(BaseSettings):
    """Root settings; environment variables use the prefix MLOPS_ and `__` between groups."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
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
                "listed in mlops_flows/settings.py and the README."
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
    def _manual_promotion_in_production(self) -> Settings:
        if self.is_production and "promotion_policy" not in self.model_fields_set:
            self.promotion_policy = PromotionPolicy.MANUAL
        return self

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
