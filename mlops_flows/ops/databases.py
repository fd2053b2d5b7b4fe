"""PostgreSQL and Redis of the production profile: expected to run already; the stack
creates its databases on PostgreSQL and reports whether each answers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_flows.ops.supervision import ServiceStatus, StackError
from mlops_flows.settings import Settings

if TYPE_CHECKING:
    import psycopg

POSTGRES, REDIS = "postgres", "redis"
# MLflow's auth tables live apart from its tracking tables: both sets are migrated by Alembic.
DATABASES = ("mlflow", "mlflow_auth", "prefect", "feast")


def ensure_databases(settings: Settings) -> list[str]:
    """Create the stack's PostgreSQL databases that are missing; return the created ones."""
    import psycopg
    from psycopg import sql

    created = []
    with connect(settings, "postgres") as connection:
        for service in DATABASES:
            name = settings.postgres.database(service)
            found = connection.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
            ).fetchone()
            if found is None:
                try:
                    connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                except psycopg.errors.DuplicateDatabase:
                    continue  # created by someone else meanwhile
                created.append(name)
    return created


def connect(settings: Settings, database: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to one database of the configured PostgreSQL server."""
    import psycopg

    pg = settings.postgres
    password = pg.password.get_secret_value() if pg.password else None
    try:
        return psycopg.connect(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=password,
            dbname=database,
            connect_timeout=3,
            autocommit=True,
        )
    except psycopg.OperationalError as error:
        raise StackError(
            f"PostgreSQL at {pg.host}:{pg.port} (user {pg.user}) is not reachable "
            f"({_one_line(error)}). Start it, or set MLOPS_POSTGRES__HOST/PORT/USER/PASSWORD."
        ) from None


def postgres_status(settings: Settings) -> ServiceStatus:
    pg = settings.postgres
    url = f"postgresql://{pg.user}@{pg.host}:{pg.port}"  # never the password
    try:
        with connect(settings, "postgres") as connection:
            version = connection.execute("SHOW server_version").fetchone()
    except StackError as error:
        return ServiceStatus(POSTGRES, url, False, str(error))
    return ServiceStatus(POSTGRES, url, True, f"PostgreSQL {version[0] if version else '?'}")


def redis_status(settings: Settings) -> ServiceStatus:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options = settings.redis
    url = f"redis://{options.host}:{options.port}/{options.db}"  # never the password
    password = options.password.get_secret_value() if options.password else None
    client = redis.Redis(
        host=options.host,
        port=options.port,
        db=options.db,
        password=password,
        socket_timeout=2,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),  # a health check answers now, not after back-offs
    )
    try:
        client.ping()
    except redis.RedisError as error:
        return ServiceStatus(
            REDIS,
            url,
            False,
            f"not reachable ({_one_line(error)}). Start it (`redis-server --bind 127.0.0.1`), "
            "or set MLOPS_REDIS__HOST/PORT/PASSWORD.",
        )
    finally:
        client.close()
    return ServiceStatus(REDIS, url, True, "answers PING")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()).rstrip(".?")
