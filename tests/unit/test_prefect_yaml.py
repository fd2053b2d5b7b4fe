"""prefect.yaml against Prefect's own models: Prefect ignores unknown keys, so we do not."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter

from tests.support import CHECKOUT

PREFECT_YAML = CHECKOUT / "prefect.yaml"


def _document() -> dict[str, Any]:
    return dict(yaml.safe_load(PREFECT_YAML.read_text()))


def _deployments() -> list[dict[str, Any]]:
    return list(_document()["deployments"])


def _ids() -> list[str]:
    return [f"{d['entrypoint'].split(':')[1]}/{d['name']}" for d in _deployments()]


def _allowed(model: type[BaseModel]) -> set[str]:
    return {name for name, field in model.model_fields.items()} | {
        field.alias for field in model.model_fields.values() if field.alias
    }


def _unknown(mapping: dict[str, Any], model: type[BaseModel]) -> set[str]:
    return set(mapping) - _allowed(model)


def test_top_level_and_deployment_keys_are_known_to_prefect() -> None:
    from prefect.cli.deploy._models import (
        ConcurrencyLimitSpec,
        DeploymentConfig,
        PrefectYamlModel,
        RawScheduleConfig,
        WorkPoolConfig,
    )

    document = _document()
    assert _unknown(document, PrefectYamlModel) <= {"definitions"}
    PrefectYamlModel.model_validate(document)
    for deployment in _deployments():
        assert not _unknown(deployment, DeploymentConfig), deployment["name"]
        assert not _unknown(deployment["work_pool"], WorkPoolConfig)
        assert deployment["work_pool"]["name"] == "mlops-process"
        assert deployment.get("description"), f"{deployment['name']} needs a description"
        for schedule in deployment.get("schedules", []):
            RawScheduleConfig.model_validate(schedule)
        if isinstance(deployment.get("concurrency_limit"), dict):
            assert not _unknown(deployment["concurrency_limit"], ConcurrencyLimitSpec)


def test_triggers_validate_as_prefect_deployment_triggers() -> None:
    from prefect.events import DeploymentTriggerTypes
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger

    adapter: TypeAdapter[Any] = TypeAdapter(DeploymentTriggerTypes)
    triggers = [t for d in _deployments() for t in d.get("triggers", [])]
    assert len(triggers) == 3
    for trigger in triggers:
        assert not _unknown(trigger, DeploymentEventTrigger) - {"type"}, trigger["name"]
        assert isinstance(adapter.validate_python(trigger), DeploymentEventTrigger)


def test_every_event_id_template_is_a_string() -> None:
    # `{{ event.id }}` is a UUID, not JSON: the automation would silently create no run.
    text = PREFECT_YAML.read_text()
    assert "event.id }}" not in text.replace("event.id | string }}", "")


def _flow(entrypoint: str) -> Any:
    path, name = entrypoint.split(":")
    assert (CHECKOUT / path).is_file(), f"entrypoint file {path} does not exist"
    module = importlib.import_module(Path(path).with_suffix("").as_posix().replace("/", "."))
    return getattr(module, name)


@pytest.mark.parametrize("deployment", _deployments(), ids=_ids())
def test_entrypoint_imports_and_parameters_match_the_flow(deployment: dict[str, Any]) -> None:
    from prefect import Flow

    flow = _flow(deployment["entrypoint"])
    assert isinstance(flow, Flow)
    signature = inspect.signature(flow.fn)
    defaults = deployment.get("parameters", {})
    triggered = [t.get("parameters") or {} for t in deployment.get("triggers", [])]
    for parameters in [defaults, *triggered]:
        assert set(parameters) <= set(signature.parameters), (deployment["name"], parameters)
    required = {
        name for name, p in signature.parameters.items() if p.default is inspect.Parameter.empty
    }
    # Scheduled runs get the deployment's parameters; triggered runs get the trigger's on top.
    # A deployment with neither is run by a person, whose form asks for what is required.
    runs = [defaults | parameters for parameters in triggered]
    if deployment.get("schedules"):
        runs.append(defaults)
    for parameters in runs:
        assert required <= set(parameters), (deployment["name"], required - set(parameters))


def test_no_deployed_flow_takes_a_decision_as_a_parameter() -> None:
    """A decision reaches the approval flow only as the input of its suspended run: a
    parameter would let anyone who can start a run approve a version."""
    for deployment in _deployments():
        parameters = inspect.signature(_flow(deployment["entrypoint"]).fn).parameters
        assert "decision" not in parameters, deployment["name"]
    approval = [d for d in _deployments() if d["entrypoint"].endswith(":approve_churn_model")]
    assert [list(inspect.signature(_flow(d["entrypoint"]).fn).parameters) for d in approval] == [
        ["version"]
    ]


@pytest.mark.parametrize("deployment", _deployments(), ids=_ids())
def test_parameters_refuse_unknown_fields_and_name_no_service_url(
    deployment: dict[str, Any],
) -> None:
    """A run cannot bring a parameter its flow does not declare (a removed `service_url`, a
    typo): the parameter models say so in the deployment's schema."""
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(_flow(deployment["entrypoint"]).fn).model_dump()
    for model in schema.get("definitions", {}).values():
        if model.get("type") == "object" and "properties" in model:
            assert model.get("additionalProperties") is False, model["title"]
            assert not {"service_url", "force_smoke_failure"} & set(model["properties"])


def test_the_work_pool_template_takes_no_command_or_environment_from_a_run() -> None:
    import asyncio
    import json

    from prefect.workers.process import ProcessJobConfiguration

    template = json.loads((CHECKOUT / "work-pool.json").read_text())
    variables = template["variables"]
    assert variables["additionalProperties"] is False
    assert not {"command", "env", "working_dir"} & set(variables["properties"])
    assert not {"command", "env", "working_dir"} & set(template["job_configuration"])
    # What the worker builds from it: its own command, its own environment.
    configuration = asyncio.run(ProcessJobConfiguration.from_template_and_values(template, {}))
    assert (configuration.command, configuration.env, configuration.working_dir) == (None, {}, None)
    assert _document()["definitions"]["work_pools"]["process"]["job_variables"] == {}


def test_pull_step_takes_the_project_directory_from_the_environment() -> None:
    (step,) = _document()["pull"]
    directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
    assert directory == "{{ $MLOPS_PROJECT_DIR }}"


def test_the_build_step_checks_the_directory_the_pull_step_will_enter() -> None:
    (step,) = _document()["build"]
    assert step == {
        "mlops_flows.ops.runtime.check_project_dir": {"directory": "{{ $MLOPS_PROJECT_DIR }}"}
    }


@pytest.mark.parametrize("directory", ["{{ $MLOPS_PROJECT_DIR }}", " ", "/nonexistent"])
def test_deploying_without_the_project_directory_is_refused(directory: str) -> None:
    from mlops_flows.ops.runtime import DeployEnvironmentError, check_project_dir

    with pytest.raises(DeployEnvironmentError, match="MLOPS_PROJECT_DIR"):
        check_project_dir(directory)
    assert check_project_dir(str(CHECKOUT)) == {"directory": str(CHECKOUT)}
