"""The servers of the production profile: PostgreSQL, Redis, and `mlops stack`."""

from __future__ import annotations

from pydantic import Field, SecretStr

from mlops_flows.settings.group import Group


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
