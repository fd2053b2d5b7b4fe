"""PostgreSQL and Redis for tests: required under CI, skipped locally when absent, and a
private set of databases, Feast project and ports per test run, removed afterwards."""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlops_flows.ops import databases
from mlops_flows.settings import Settings
from tests.e2e.stack import free_port
from tests.support import make_key

CI_HINT = ".ci/run starts PostgreSQL and Redis before `make test`"


def require_services(settings: Settings) -> None:
    """Fail under CI=true, skip otherwise, when PostgreSQL or Redis does not answer."""
    missing = [
        f"{found.name} ({found.url}): {found.detail}"
        for found in (databases.postgres_status(settings), databases.redis_status(settings))
        if not found.healthy
    ]
    if not missing:
        return
    message = "needs " + "; ".join(missing)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}. {CI_HINT}.")
    pytest.skip(message)


@dataclass(frozen=True)
class ProductionResources:
    """Names no user's stack uses: database prefix, Feast project, ports, admin password."""

    home: Path
    prefix: str
    project: str
    mlflow_port: int
    prefect_port: int
    admin_password: str
    governance_password: str  # the worker's and the CLI's MLflow account
    scoring_password: str  # the scoring service's, read-only
    prefect_auth: str  # user:password of the Prefect API
    governance_key: Path  # signs the audit history
    governance_public_key: str
    approvers: Path  # lists one approver, `e2e`, whose key is approver_key
    approver_key: Path
    postgres_port: int = 5432
    redis_port: int = 6379

    @classmethod
    def create(
        cls, home: Path, postgres_port: int = 5432, redis_port: int = 6379
    ) -> ProductionResources:
        token = uuid.uuid4().hex[:10]
        keys = home.parent / f"keys-{token}"
        approver = make_key(keys / "e2e")
        (keys / "approvers").write_text(f"e2e {approver}\n")
        return cls(
            governance_key=keys / "governance",
            governance_public_key=make_key(keys / "governance"),
            approvers=keys / "approvers",
            approver_key=keys / "e2e",
            postgres_port=postgres_port,
            redis_port=redis_port,
            home=home,
            prefix=f"mlops_test_{token}",
            project=f"test_{token}",
            mlflow_port=free_port(),
            prefect_port=free_port(),
            admin_password=secrets.token_hex(16),
            governance_password=secrets.token_hex(16),
            scoring_password=secrets.token_hex(16),
            prefect_auth=f"operator:{secrets.token_hex(16)}",
        )

    def environment(self) -> dict[str, str]:
        """MLOPS_* variables of a production profile on these resources."""
        return {
            "MLOPS_HOME": str(self.home),
            "MLOPS_PROFILE": "production",
            # The loop tests promote without a person; production's default is manual.
            "MLOPS_PROMOTION_POLICY": "auto",
            "MLOPS_POSTGRES__DATABASE_PREFIX": self.prefix,
            "MLOPS_FEATURES__PROJECT": self.project,
            "MLOPS_MLFLOW__SERVER_PORT": str(self.mlflow_port),
            "MLOPS_PREFECT__SERVER_PORT": str(self.prefect_port),
            "MLOPS_MLFLOW__ADMIN_PASSWORD": self.admin_password,
            "MLOPS_MLFLOW__GOVERNANCE_PASSWORD": self.governance_password,
            "MLOPS_MLFLOW__SCORING_PASSWORD": self.scoring_password,
            "MLOPS_PREFECT__AUTH_STRING": self.prefect_auth,
            "MLOPS_GOVERNANCE__SIGNING_KEY_FILE": str(self.governance_key),
            "MLOPS_GOVERNANCE__PUBLIC_KEY": self.governance_public_key,
            "MLOPS_GOVERNANCE__APPROVERS_FILE": str(self.approvers),
            # The person's own key: here in the same environment as the worker's, for the test.
            "MLOPS_GOVERNANCE__APPROVER_KEY_FILE": str(self.approver_key),
            "MLOPS_POSTGRES__PORT": str(self.postgres_port),
            "MLOPS_REDIS__PORT": str(self.redis_port),
        }

    def settings(self) -> Settings:
        return Settings(
            home=self.home,
            profile="production",  # type: ignore[arg-type]
            postgres={"database_prefix": self.prefix, "port": self.postgres_port},
            redis={"port": self.redis_port},
            features={"project": self.project},
            mlflow={
                "server_port": self.mlflow_port,
                "admin_password": self.admin_password,
                "governance_password": self.governance_password,
                "scoring_password": self.scoring_password,
            },
            prefect={"server_port": self.prefect_port, "auth_string": self.prefect_auth},
            governance={
                "signing_key_file": self.governance_key,
                "public_key": self.governance_public_key,
                "approvers_file": self.approvers,
            },
        )

    def remove(self) -> None:
        """Drop the databases and delete the Feast project's Redis keys."""
        import redis
        from psycopg import sql

        settings = self.settings()
        with databases.connect(settings, "postgres") as connection:
            for service in databases.DATABASES:
                name = sql.Identifier(settings.postgres.database(service))
                connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        client = redis.Redis(host=settings.redis.host, port=settings.redis.port)
        try:
            # Feast's Redis keys end with the project name.
            for key in client.scan_iter(match=f"*{self.project}", count=1000):
                client.delete(key)
        finally:
            client.close()
