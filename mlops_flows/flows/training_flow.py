"""Continuous training: features -> validation -> fit -> gates -> registry, one Prefect flow."""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from mlops_flows.logic import training
from mlops_flows.logic.keys import keys_of
from mlops_flows.ops import lineage
from mlops_flows.settings import Settings
from mlops_flows.steps import settle
from mlops_flows.steps import training as steps
from mlops_flows.steps.start import ended, start
from mlops_flows.steps.training import TrainingOutcome, TrainingParameters, TrainingStatus

__all__ = ["TrainingOutcome", "TrainingParameters", "TrainingStatus", "train_churn_model"]

# Each step a task: its own state, logs and timing in the UI. Nothing is cached: a step's
# inputs (frames, models) are not worth hashing, and a retry must see the registry as it is.
build_training_set = task(cache_policy=NO_CACHE)(steps.build_training_set)
validate_training_set = task(cache_policy=NO_CACHE)(steps.validate_training_set)
fit_candidate = task(cache_policy=NO_CACHE)(steps.fit_candidate)
evaluate_candidate = task(cache_policy=NO_CACHE)(steps.evaluate_candidate)
log_run = task(cache_policy=NO_CACHE)(steps.log_run)
register_candidate = task(cache_policy=NO_CACHE)(steps.register_candidate)
settle_candidate = task(cache_policy=NO_CACHE)(settle.settle_candidate)


@flow(name="train-churn-model", log_prints=True)
def train_churn_model(parameters: TrainingParameters | None = None) -> TrainingOutcome:
    """Train a candidate from the FeatureService, gate it against the champion, register it,
    then promote it (policy auto) or ask a person to approve it (policy manual)."""
    parameters = parameters or TrainingParameters()
    meter = lineage.ResourceMeter()
    run = start(experiment=True, signs=True)
    settings = run.settings
    found: str | TrainingOutcome | None = settle.registered_by_this_run(settings)
    if found is None:
        found = _train_and_register(settings, parameters, run.experiment_id, meter)
    else:  # a retry of a run that registered before it stopped: finish, never register twice
        get_run_logger().info("This flow run already registered v%s; settling it", found)
    outcome = found if isinstance(found, TrainingOutcome) else settle_candidate(settings, found)
    message = f"v{outcome.version} {outcome.status}: {outcome.gate_summary}"
    print(message)
    if outcome.status.champion_unchanged:
        return ended(outcome, outcome.status.capitalize(), message)
    return outcome


def _train_and_register(
    settings: Settings,
    parameters: TrainingParameters,
    experiment_id: str,
    meter: lineage.ResourceMeter,
) -> str | TrainingOutcome:
    """The version registered; or, when a version was trained from this same request, the
    outcome saying so, with nothing trained."""
    keys = keys_of(settings)
    model_parameters = steps.model_parameters(settings, parameters)
    training_set = build_training_set(settings, parameters)
    validation = validate_training_set(settings, training_set)
    training.check_trainable(training_set.frame, keys, settings.gates.slice_columns)
    split = training.split_by_time(
        training_set.frame, keys, parameters.holdout_days or settings.training.holdout_days
    )
    bundle = steps.lineage_of(settings, training_set, validation, split, model_parameters, keys)
    duplicate = steps.trained_from(settings, bundle)
    if duplicate is not None:
        return duplicate
    model = fit_candidate(split, keys, model_parameters)
    evaluation = evaluate_candidate(settings, model, split, keys, model_parameters.seed)
    create_table_artifact(
        key="gate-results", table=evaluation.report.to_rows(), description="Evaluation gates"
    )
    logged = log_run(
        settings,
        experiment_id,
        training_set,
        split,
        model,
        evaluation,
        validation,
        bundle,
        model_parameters,
        parameters,
        meter,
    )
    return register_candidate(settings, logged, bundle, evaluation)
