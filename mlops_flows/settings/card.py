"""What a model card says about the model beyond its figures: the use case's own words."""

from __future__ import annotations

from pydantic import Field

from mlops_flows.settings.group import Group


class CardSettings(Group):
    """Texts of the model card (recorded with each version as `card.json` in its run, so a
    version's card keeps the words of the use case it was trained under)."""

    description: str = Field(
        default="",
        description="One line on the registered model, its MLflow description; empty: none.",
    )
    intended_use: str = Field(
        default="Not stated: the use case's [card] section says what the model is for.",
        description="What the model is for and what it is not for: the card's first section.",
    )
    known_limits: tuple[str, ...] = Field(
        default=(),
        description="Limits a user of the scores should know, one item each, listed after the "
        "ones every card states (the training window, the values seen, missing features, "
        "small slices).",
    )
