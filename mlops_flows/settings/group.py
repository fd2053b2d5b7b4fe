"""The base of every settings group."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Group(BaseModel):
    """A settings group: an unknown key is a typo, not something to ignore."""

    model_config = ConfigDict(extra="forbid")
