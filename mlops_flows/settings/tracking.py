"""MLflow: the tracking server, the registered model and the accounts that reach it."""

from __future__ import annotations

from pydantic import Field, SecretStr

from mlops_flows.settings.group import Group


class MlflowSettings(Group):
    """MLflow tracking and registry."""

    tracking_uri: str | None = Field(
        default=None,
        description="Tracking URI; empty means a SQLite store inside the workspace.",
    )
    experiment: str = Field(
        default="",
        description="Experiment that holds training runs (default: the use case's name).",
    )
    model_name: str = Field(
        default="", description="Registered model of this use case (default: its name)."
    )
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
