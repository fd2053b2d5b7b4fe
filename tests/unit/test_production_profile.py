"""Unit tests of the production profile: derived URLs, Feast variables, secrets kept out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from mlops_flows.ops import servers, supervision
from mlops_flows.settings import Profile, Settings, TaskRunnerKind
from tests.support import CHECKOUT, unset

SECRET = "s3cret-Pg-pass/word"  # noqa: S105 - a test value, checked to stay hidden


@pytest.fixture
def production(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    """Production settings with every password set, from the environment."""
    for name in list(os.environ):
        if name.startswith("MLOPS_"):
            unset(monkeypatch, name)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "workspace"))
    monkeypatch.setenv("MLOPS_PROFILE", "production")
    monkeypatch.setenv("MLOPS_POSTGRES__PASSWORD", SECRET)
    monkeypatch.setenv("MLOPS_REDIS__PASSWORD", "redis-" + SECRET)
    monkeypatch.setenv("MLOPS_MLFLOW__ADMIN_PASSWORD", "mlflow-" + SECRET)
    monkeypatch.setenv("MLOPS_MLFLOW__GOVERNANCE_PASSWORD", "governance-" + SECRET)
    monkeypatch.setenv("MLOPS_MLFLOW__SCORING_PASSWORD", "scoring-" + SECRET)
    monkeypatch.setenv("MLOPS_PREFECT__AUTH_STRING", "operator:prefect-" + SECRET)
    return Settings()


def test_production_derives_servers_and_the_feast_file(production: Settings) -> None:
    assert production.profile == Profile.PRODUCTION
    assert production.tracking_uri == "http://127.0.0.1:5000"
    assert production.feature_store_yaml == CHECKOUT / "features/production/feature_store.yaml"
    assert production.feature_store_yaml.is_file()


def test_local_is_the_default_and_uses_the_repository_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.profile == Profile.LOCAL
    assert settings.prefect.task_runner == TaskRunnerKind.THREAD
    assert settings.feature_store_yaml == CHECKOUT / "features/feature_store.yaml"
    assert "FEAST_SQL_REGISTRY_URL" not in settings.library_environment()


def test_production_environment_feeds_the_feast_file_and_the_mlflow_login(
    production: Settings,
) -> None:
    environment = production.library_environment()
    assert environment["FEAST_SQL_REGISTRY_URL"] == (
        "postgresql+psycopg://postgres:s3cret-Pg-pass%2Fword@127.0.0.1:5432/mlops_feast"
    )
    assert environment["FEAST_REDIS_CONNECTION_STRING"] == (
        f"127.0.0.1:6379,db=0,password=redis-{SECRET}"
    )
    assert environment["FEAST_PROJECT_NAME"] == "churn"
    assert environment["FEAST_FS_YAML_FILE_PATH"] == str(production.feature_store_yaml)
    # The governance account, never the admin's: only `stack up` uses that.
    assert environment["MLFLOW_TRACKING_USERNAME"] == "mlops-governance"
    assert environment["MLFLOW_TRACKING_PASSWORD"] == f"governance-{SECRET}"
    assert environment["PREFECT_API_AUTH_STRING"] == f"operator:prefect-{SECRET}"


def test_the_scoring_service_logs_in_read_only_and_a_person_as_themselves(
    production: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    scoring = production.library_environment(scoring=True)
    assert (scoring["MLFLOW_TRACKING_USERNAME"], scoring["MLFLOW_TRACKING_PASSWORD"]) == (
        "mlops-scoring",
        f"scoring-{SECRET}",
    )
    monkeypatch.setenv("MLOPS_MLFLOW__USERNAME", "alice")
    monkeypatch.setenv("MLOPS_MLFLOW__PASSWORD", "alice-" + SECRET)
    for role in (False, True):
        environment = Settings().library_environment(scoring=role)
        assert environment["MLFLOW_TRACKING_USERNAME"] == "alice"


@pytest.mark.parametrize("account", ["GOVERNANCE", "SCORING"])
@pytest.mark.parametrize("password", [None, "short", "changeme"])
def test_the_stack_refuses_a_missing_or_weak_role_password(
    production: Settings, monkeypatch: pytest.MonkeyPatch, account: str, password: str | None
) -> None:
    variable = f"MLOPS_MLFLOW__{account}_PASSWORD"
    if password is None:
        unset(monkeypatch, variable)
    else:
        monkeypatch.setenv(variable, password)
    with pytest.raises(supervision.StackError, match=variable):
        servers.role_accounts(Settings())
    assert set(servers.role_accounts(production)) == {"mlops-governance", "mlops-scoring"}


def test_no_secret_in_dumps_or_repr(production: Settings) -> None:
    for text in (production.model_dump_json(), repr(production), str(production.model_dump())):
        assert SECRET not in text


@pytest.mark.parametrize("password", [None, "", "short", "password1234", "PASSWORD1234"])
def test_the_stack_refuses_a_missing_short_or_default_admin_password(
    tmp_path: Path, password: str | None
) -> None:
    secret = None if password is None else SecretStr(password)
    settings = Settings(home=tmp_path, mlflow={"admin_password": secret})
    with pytest.raises(supervision.StackError, match="MLOPS_MLFLOW__ADMIN_PASSWORD"):
        servers.check_admin_password(settings)


@pytest.mark.parametrize(
    "auth", [None, "", "operator", "operator:", ":long-enough-password", "op:short", "op:changeme"]
)
def test_the_stack_refuses_a_missing_short_or_default_prefect_login(
    tmp_path: Path, auth: str | None
) -> None:
    secret = None if auth is None else SecretStr(auth)
    settings = Settings(home=tmp_path, prefect={"auth_string": secret})
    with pytest.raises(supervision.StackError, match="MLOPS_PREFECT__AUTH_STRING"):
        servers.check_prefect_auth(settings)


def test_the_prefect_server_asks_every_call_for_the_login_and_a_csrf_token(
    production: Settings,
) -> None:
    (prefect,) = (launch for launch in servers.launches(production) if launch.name == "prefect")
    assert prefect.environment["PREFECT_SERVER_API_AUTH_STRING"] == f"operator:prefect-{SECRET}"
    assert prefect.environment["PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED"] == "true"
    assert prefect.environment["PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS"] == prefect.url


def test_servers_bind_loopback_and_keep_secrets_off_the_command_line(
    production: Settings,
) -> None:
    launches = {launch.name: launch for launch in servers.launches(production)}
    assert set(launches) == {"mlflow", "prefect"}
    for launch in launches.values():
        assert launch.argv[launch.argv.index("--host") + 1] == "127.0.0.1"
        assert not any(SECRET in argument for argument in launch.argv)
    mlflow = launches["mlflow"]
    assert mlflow.argv[-2:] == ["--app-name", "basic-auth"]
    assert "--serve-artifacts" in mlflow.argv
    assert mlflow.environment["MLFLOW_BACKEND_STORE_URI"].endswith("/mlops_mlflow")
    assert (
        launches["prefect"]
        .environment["PREFECT_API_DATABASE_CONNECTION_URL"]
        .startswith("postgresql+asyncpg://")
    )
    key = servers.stack_folder(production) / "mlflow-secret-key"
    assert key.stat().st_mode & 0o777 == 0o600


def test_each_server_inherits_only_the_basics_and_its_own_librarys_settings(
    production: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Least privilege: no server sees the other's secrets, a client's credentials or how the
    caller's Python was started (coverage's start-up variable, say)."""
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:" + SECRET)
    monkeypatch.setenv("PREFECT_SERVER_API_KEEPALIVE_TIMEOUT", "9")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    monkeypatch.setenv("MLFLOW_GUNICORN_OPTS", "--timeout 9")
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", "{}")
    launches = {launch.name: launch for launch in servers.launches(production)}
    environments = {
        name: supervision.server_environment(launch.library, launch.environment)
        for name, launch in launches.items()
    }
    for name, environment in environments.items():
        assert environment["PATH"] == os.environ["PATH"]
        assert environment.items() >= launches[name].environment.items()
        inherited = set(environment) - set(launches[name].environment)
        assert not any(SECRET in environment[variable] for variable in inherited), name
        assert "COVERAGE_PROCESS_CONFIG" not in environment
    assert environments["prefect"]["PREFECT_SERVER_API_KEEPALIVE_TIMEOUT"] == "9"
    assert not {"PREFECT_API_URL", "PREFECT_API_AUTH_STRING"} & set(environments["prefect"])
    assert environments["mlflow"]["MLFLOW_GUNICORN_OPTS"] == "--timeout 9"
    assert not any(name.startswith(("MLOPS_", "MLFLOW_")) for name in environments["prefect"])
    assert not any(name.startswith(("MLOPS_", "PREFECT_")) for name in environments["mlflow"])


def test_task_runner_is_threads_by_default_and_dask_on_loopback_when_chosen() -> None:
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask.task_runners import DaskTaskRunner

    from mlops_flows.adapters.task_runners import task_runner_for
    from mlops_flows.settings import PrefectSettings

    assert isinstance(task_runner_for(PrefectSettings()), ThreadPoolTaskRunner)
    local = task_runner_for(PrefectSettings(task_runner=TaskRunnerKind.DASK, dask_workers=3))
    assert isinstance(local, DaskTaskRunner)
    assert local.cluster_kwargs["host"] == "127.0.0.1"
    assert local.cluster_kwargs["dashboard_address"] is None
    assert local.cluster_kwargs["n_workers"] == 3
    remote = task_runner_for(
        PrefectSettings(task_runner=TaskRunnerKind.DASK, dask_address="tcp://10.0.0.5:8786")
    )
    assert remote.address == "tcp://10.0.0.5:8786"


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_missing_services_fail_under_ci_and_skip_locally(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str, outcome: type[BaseException]
) -> None:
    from tests.services import free_port, require_services

    monkeypatch.setenv("CI", ci)
    nothing = free_port()  # nothing listens there
    settings = Settings(home=tmp_path, postgres={"port": nothing}, redis={"port": nothing})
    with pytest.raises(outcome, match=r"(?s)postgres .*not reachable.*redis .*not reachable"):
        require_services(settings)


def test_features_env_prints_what_the_feast_cli_needs(production: Settings) -> None:
    from typer.testing import CliRunner

    from mlops_flows.cli.app import app

    result = CliRunner().invoke(app, ["features", "env"])
    assert result.exit_code == 0, result.output
    exported = dict(
        line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines()
    )
    assert set(exported) >= {
        "FEAST_FS_YAML_FILE_PATH",
        "FEAST_PROJECT_NAME",
        "FEAST_SQL_REGISTRY_URL",
        "FEAST_REDIS_CONNECTION_STRING",
    }
    assert exported["FEAST_PROJECT_NAME"] == "churn"


def test_production_decides_and_writes_history_only_with_its_keys(production: Settings) -> None:
    """Each refusal comes before anything changes: the flows call these first."""
    from mlops_flows.registry import decisions, history

    with pytest.raises(decisions.UnauthenticatedDecisionError, match="APPROVERS_FILE"):
        decisions.approvers(production)
    with pytest.raises(history.HistoryKeyError, match="SIGNING_KEY_FILE"):
        history.signer(production)
    with pytest.raises(history.HistoryKeyError, match="PUBLIC_KEY"):
        history.trusted_key(production)
