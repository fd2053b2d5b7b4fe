"""Times from forms and command lines are often naive: read them as UTC, as the data are."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator


def to_utc(moment: datetime) -> datetime:
    """A naive time is read as UTC; an aware one keeps its instant."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# A flow parameter of this type renders as a date-time field and arrives in UTC.
UtcDatetime = Annotated[datetime, AfterValidator(to_utc)]
