"""Unit tests of the settings object: defaults, MLOPS_* variables, derived paths, library env."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsError

from mlops_flows.settings import PromotionPolicy, Settings
from tests.support import CHECKOUT, unset

TELEMETRY_OFF = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "FEAST_USAGE": "False",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No MLOPS_* variable and no library variable set (the session's conftest sets some)."""
    library_names = Settings(home=Path("/unused")).library_environment()
    for name in [*os.environ, *library_names]:
        if name.startswith("MLOPS_") or name in library_names:
            unset(monkeypatch, name)
    return monkeypatch


def attribute(settings: Settings, dotted: str) -> Any:
    value: Any = settings
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


@pytest.mark.parametrize(
    ("dotted", "expected"),
    [
        ("home", CHECKOUT / ".mlops"),
        ("promotion_policy", PromotionPolicy.AUTO),
        ("features.repo_path", CHECKOUT / "features"),
        ("features.feature_service", "churn_model_v1"),
        ("features.labels_path", None),
        ("expectations.folder", CHECKOUT / "expectations"),
        ("mlflow.tracking_uri", None),
        ("mlflow.model_name", "churn"),
        ("training.seed", 42),
        ("training.threads", 1),
        ("training.holdout_days", 21),
        ("gates.min_roc_auc", 0.70),
        ("gates.slice_columns", ("plan", "region")),
        ("prefect.api_url", None),
        ("prefect.server_host", "127.0.0.1"),
        ("prefect.server_port", 4200),
    ],
)
def test_defaults(clean_environment: pytest.MonkeyPatch, dotted: str, expected: Any) -> None:
    assert attribute(Settings(), dotted) == expected


def test_paths_come_from_the_project_folder_not_from_the_installed_package(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An installed library finds the project's files under MLOPS_PROJECT_DIR (default: the
    current folder); relative path settings are relative to it, absolute ones stay."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clean_environment.chdir(elsewhere)
    project = tmp_path / "project"
    clean_environment.setenv("MLOPS_PROJECT_DIR", str(project))
    clean_environment.setenv("MLOPS_EXPECTATIONS__FOLDER", "suites")
    clean_environment.setenv("MLOPS_FEATURES__LABELS_PATH", str(tmp_path / "labels.parquet"))
    settings = Settings()
    assert settings.project_dir == project
    assert settings.home == project / ".mlops"
    assert settings.features.repo_path == project / "features"
    assert settings.expectations.folder == project / "suites"
    assert settings.features.labels_path == tmp_path / "labels.parquet"
    assert Settings(project_dir=Path("nested")).home == elsewhere / "nested" / ".mlops"
    clean_environment.delenv("MLOPS_PROJECT_DIR")
    assert Settings().features.repo_path == elsewhere / "features"


@pytest.mark.parametrize(
    ("variable", "value", "dotted", "expected"),
    [
        ("MLOPS_GATES__MIN_ROC_AUC", "0.8", "gates.min_roc_auc", 0.8),
        ("MLOPS_PROMOTION_POLICY", "manual", "promotion_policy", PromotionPolicy.MANUAL),
        ("MLOPS_HOME", "/srv/mlops", "home", Path("/srv/mlops")),
        ("MLOPS_TRAINING__THREADS", "4", "training.threads", 4),
        ("MLOPS_PREFECT__SERVER_PORT", "4321", "prefect.server_port", 4321),
        ("MLOPS_FEATURES__FEATURE_SERVICE", "churn_v2", "features.feature_service", "churn_v2"),
        ("MLOPS_GATES__SLICE_COLUMNS", '["plan"]', "gates.slice_columns", ("plan",)),
    ],
)
def test_environment_variables_override_defaults(
    clean_environment: pytest.MonkeyPatch, variable: str, value: str, dotted: str, expected: Any
) -> None:
    clean_environment.setenv(variable, value)
    assert attribute(Settings(), dotted) == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MLOPS_GATES__MIN_ROC_AUC", "abc"),
        ("MLOPS_PROMOTION_POLICY", "sometimes"),
        ("MLOPS_TRAINING__THREADS", "0"),
        ("MLOPS_PREFECT__SERVER_PORT", "port"),
        ("MLOPS_GATES__SLICE_COLUMNS", '[1, "plan"]'),
    ],
)
def test_invalid_values_raise(
    clean_environment: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    clean_environment.setenv(variable, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("variable", "value"), [("MLOPS_GATES__SLICE_COLUMNS", "plan,region"), ("MLOPS_GATES", "{")]
)
def test_values_that_are_not_json_raise_a_settings_error(
    clean_environment: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    # Not a ValidationError: pydantic-settings fails while decoding, before validation.
    clean_environment.setenv(variable, value)
    with pytest.raises(SettingsError, match="gates"):
        Settings()


def test_unknown_keyword_raises(clean_environment: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="promotion_polcy"):
        Settings(promotion_polcy="manual")  # type: ignore[call-arg]


@pytest.mark.parametrize("variable", ["MLOPS_GATES__MIN_ROC_AUCC", "MLOPS_PROMOTION_POLICYY"])
def test_mistyped_variable_raises(clean_environment: pytest.MonkeyPatch, variable: str) -> None:
    clean_environment.setenv(variable, "0.99")
    with pytest.raises(ValidationError):
        Settings()


def test_tracking_uri_is_sqlite_inside_the_workspace(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path / "workspace")
    assert settings.tracking_uri.startswith("sqlite:///")
    database = Path(settings.tracking_uri.removeprefix("sqlite:///"))
    assert database.is_absolute()
    assert database.is_relative_to(settings.home_resolved)


def test_tracking_uri_follows_a_relative_home(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_environment.chdir(tmp_path)
    clean_environment.setenv("MLOPS_HOME", "relative")
    settings = Settings()
    assert settings.home_resolved == tmp_path.resolve() / "relative"
    assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'relative/mlflow/mlflow.db'}"


def test_tracking_uri_from_the_environment_wins(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_environment.setenv("MLOPS_MLFLOW__TRACKING_URI", "http://127.0.0.1:5000")
    assert Settings(home=tmp_path).tracking_uri == "http://127.0.0.1:5000"


def test_labels_path_defaults_to_the_workspace_and_can_be_set(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "workspace"
    assert Settings(home=home).labels_path == home.resolve() / "data" / "labels.parquet"
    clean_environment.setenv("MLOPS_FEATURES__LABELS_PATH", str(tmp_path / "mine.parquet"))
    assert Settings(home=home).labels_path == tmp_path / "mine.parquet"


def test_library_environment_turns_telemetry_off(tmp_path: Path) -> None:
    environment = Settings(home=tmp_path).library_environment()
    assert {name: environment[name] for name in TELEMETRY_OFF} == TELEMETRY_OFF


@pytest.mark.parametrize("name", ["PREFECT_HOME", "MPLCONFIGDIR", "MLOPS_HOME"])
def test_library_side_files_stay_in_the_workspace(tmp_path: Path, name: str) -> None:
    settings = Settings(home=tmp_path / "workspace")
    folder = Path(settings.library_environment()[name])
    assert folder.is_relative_to(settings.home_resolved)


def test_export_keeps_user_values_but_sets_home_and_tracking_uri(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_environment.setenv("PREFECT_HOME", "/user/prefect")
    clean_environment.setenv("MLOPS_HOME", "/stale/workspace")
    clean_environment.setenv("MLFLOW_TRACKING_URI", "sqlite:////stale/mlflow.db")
    settings = Settings(home=tmp_path / "workspace")

    settings.export_library_environment()

    assert os.environ["PREFECT_HOME"] == "/user/prefect"
    assert os.environ["MLOPS_HOME"] == str(settings.home_resolved)
    assert os.environ["MLFLOW_TRACKING_URI"] == settings.tracking_uri
    unset_before = set(settings.library_environment()) - {
        "PREFECT_HOME",
        "MLOPS_HOME",
        "MLFLOW_TRACKING_URI",
    }
    for name in unset_before:
        assert os.environ[name] == settings.library_environment()[name]


def described_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str | None]]:
    """Every leaf field with its description; a nested group is described by its docstring."""
    found: list[tuple[str, str | None]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found.append((f"{prefix}{name}", annotation.__doc__))
            found.extend(described_fields(annotation, f"{prefix}{name}."))
        else:
            found.append((f"{prefix}{name}", field.description))
    return found


def test_every_setting_is_described() -> None:
    fields = described_fields(Settings)
    assert len(fields) > 40  # the walk reached the groups
    undescribed = [name for name, description in fields if not (description or "").strip()]
    assert undescribed == []


@pytest.mark.parametrize(
    ("variables", "policy"),
    [
        ({}, "auto"),
        ({"MLOPS_PROFILE": "production"}, "manual"),
        ({"MLOPS_PROFILE": "production", "MLOPS_PROMOTION_POLICY": "auto"}, "auto"),
        ({"MLOPS_PROMOTION_POLICY": "manual"}, "manual"),
    ],
)
def test_promotion_needs_a_person_in_production_unless_said_otherwise(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], policy: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert Settings().promotion_policy.value == policy


def test_without_passwords_no_mlflow_or_prefect_login_is_exported(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "workspace", profile="production")  # type: ignore[arg-type]
    assert settings.mlflow.login(scoring=True) is None
    exported = settings.library_environment(scoring=True)
    assert not {"MLFLOW_TRACKING_USERNAME", "PREFECT_API_AUTH_STRING"} & set(exported)


def test_an_explicit_feature_store_yaml_wins(tmp_path: Path) -> None:
    chosen = tmp_path / "elsewhere" / "feature_store.yaml"
    settings = Settings(home=tmp_path / "workspace", features={"store_yaml": chosen})  # type: ignore[arg-type]
    assert settings.feature_store_yaml == chosen


def _project(root: Path, **use_cases: str) -> Path:
    """A project folder holding `usecases/<name>.toml` with each text given."""
    (root / "usecases").mkdir(parents=True)
    for name, text in use_cases.items():
        (root / "usecases" / f"{name}.toml").write_text(text)
    return root


FRAUD = """
[features]
feature_service = "fraud_v3"
entity_key = "account"
label_column = "is_fraud"

[gates]
slice_columns = ["country"]
min_roc_auc = 0.8
"""
PRICES = '[features]\nfeature_service = "prices_v1"\nentity_key = "sku"\nlabel_column = "y"\n'


def test_the_only_use_case_is_read_and_names_the_model(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    settings = Settings(project_dir=_project(tmp_path, fraud=FRAUD))
    assert settings.model == "fraud"
    assert (settings.mlflow.model_name, settings.mlflow.experiment) == ("fraud", "fraud")
    assert settings.features.feature_service == "fraud_v3"
    assert settings.gates.slice_columns == ("country",)
    assert (settings.gates.min_roc_auc, settings.gates.max_log_loss) == (0.8, 0.60)
    settings.require_use_case()


def test_the_environment_overrides_one_key_of_a_use_case_table(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_environment.setenv("MLOPS_PROJECT_DIR", str(_project(tmp_path, fraud=FRAUD)))
    clean_environment.setenv("MLOPS_GATES__MIN_ROC_AUC", "0.9")
    settings = Settings()
    assert (settings.gates.min_roc_auc, settings.gates.slice_columns) == (0.9, ("country",))


def test_several_use_cases_need_a_name_and_each_is_its_own(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project = _project(tmp_path, fraud=FRAUD, prices=PRICES)
    with pytest.raises(SettingsError, match=r"several use cases \(fraud, prices\).*--model"):
        Settings(project_dir=project)
    clean_environment.setenv("MLOPS_MODEL", "prices")
    prices = Settings(project_dir=project)
    assert (prices.model, prices.mlflow.model_name, prices.features.entity_key) == (
        "prices",
        "prices",
        "sku",
    )
    assert prices.gates.slice_columns == ()  # fraud's slices are fraud's
    assert Settings(project_dir=project, model="fraud").features.entity_key == "account"
    with pytest.raises(SettingsError, match=r"no use case 'churn'.*holds fraud, prices"):
        Settings(project_dir=project, model="churn")


@pytest.mark.parametrize(
    ("text", "error", "told"),
    [
        ("[postgres]\nport = 1\n", SettingsError, r"postgres is not a use-case table"),
        ('[mlflow]\ntracking_uri = "http://x"\n', SettingsError, r"\[mlflow\] may set"),
        ("[features\n", SettingsError, r"fraud.toml is not readable TOML"),
        ('[features]\nentity_keys = "a"\n', ValidationError, r"entity_keys"),
        ('[gates]\nmin_roc_auc = "high"\n', ValidationError, r"min_roc_auc"),
    ],
)
def test_a_wrong_use_case_file_is_refused_naming_the_problem(
    clean_environment: pytest.MonkeyPatch,
    tmp_path: Path,
    text: str,
    error: type[Exception],
    told: str,
) -> None:
    with pytest.raises(error, match=told):
        Settings(project_dir=_project(tmp_path, fraud=text))


def test_a_model_name_that_cannot_name_a_file_is_refused(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(SettingsError, match="letters, digits"):
        Settings(project_dir=_project(tmp_path, fraud=FRAUD), model="../fraud")


def test_without_a_use_case_a_model_run_says_what_to_write(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlops_flows.settings.usecase import UseCaseError

    settings = Settings(project_dir=tmp_path)  # no usecases/ folder: commands without a model
    assert (settings.model, settings.features.feature_service) == (None, "")
    with pytest.raises(UseCaseError) as raised:
        settings.require_use_case()
    told = str(raised.value)
    assert f"no use case in {tmp_path / 'usecases'}" in told
    assert "features.feature_service, features.entity_key" in told
    assert "MLOPS_FEATURES__LABEL_COLUMN, MLOPS_MLFLOW__MODEL_NAME" in told
    # A model configured by the environment alone, as before use-case files.
    clean_environment.setenv("MLOPS_MODEL", "solo")
    for name, value in [("FEATURE_SERVICE", "s"), ("ENTITY_KEY", "k"), ("LABEL_COLUMN", "y")]:
        clean_environment.setenv(f"MLOPS_FEATURES__{name}", value)
    solo = Settings(project_dir=tmp_path)
    assert (solo.mlflow.model_name, solo.mlflow.experiment) == ("solo", "solo")
    solo.require_use_case()


def test_the_population_view_is_the_runs_choice_else_the_use_cases(
    clean_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mlops_flows.settings.usecase import UseCaseError

    with_view = FRAUD.replace("[gates]", 'population_view = "accounts"\n\n[gates]')
    settings = Settings(project_dir=_project(tmp_path / "a", fraud=with_view))
    assert settings.population_view() == "accounts"
    assert settings.population_view("merchants") == "merchants"
    without = Settings(project_dir=_project(tmp_path / "b", fraud=FRAUD))
    with pytest.raises(UseCaseError, match=r"no population view: set `population_view`"):
        without.population_view()
