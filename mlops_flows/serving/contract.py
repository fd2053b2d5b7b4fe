"""What the scoring service, its clients and the monitor agree on: HTTP shapes, token, log."""

from __future__ import annotations

import json
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, StrictInt

from mlops_flows.logic.times import to_utc
from mlops_flows.ops.workspace import Workspace
from mlops_flows.settings import Settings

HEALTH = "/health"
PREDICT = "/predict"
RELOAD = "/admin/reload"
TOKEN_FILE = "reload-token"  # noqa: S105 - a file name, not a secret
PREDICTION_LOG_GLOB = "predictions-*.jsonl"


class PredictRequest(BaseModel):
    """Entity ids to score; the batch size limit comes from settings."""

    # No min_length here: the service answers an empty list with its own, clearer message.
    customer_ids: list[StrictInt] = Field(description="Customer ids to score.")


class Prediction(BaseModel):
    customer_id: int
    churn_probability: float


class PredictResponse(BaseModel):
    model_name: str
    model_version: str
    feature_service: str
    predictions: list[Prediction]


class Health(BaseModel):
    status: str
    model_name: str
    model_version: str | None
    feature_service: str
    # Why the version `champion` points at is not served (an alias moved around governance, a
    # model that cannot load), while that lasts; None when it is served.
    alert: str | None = None


class ReloadResponse(BaseModel):
    model_version: str
    previous_version: str | None


def token_path(settings: Settings) -> Path:
    return Workspace(settings.home_resolved).serving / TOKEN_FILE


def reload_token(settings: Settings, create: bool = False) -> str:
    """The configured admin token, else the one in the workspace (made once when `create`)."""
    if settings.serving.reload_token is not None:
        return settings.serving.reload_token.get_secret_value()
    path = token_path(settings)
    if not path.exists():
        if not create:
            raise FileNotFoundError(
                f"No reload token at {path}: start the service (`mlops serve`) or set "
                "MLOPS_SERVING__RELOAD_TOKEN."
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole under another name, then renamed: a reader never sees half a token.
        draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        draft.touch(mode=0o600)
        draft.write_text(secrets.token_urlsafe(32))
        draft.replace(path)
    return path.read_text().strip()


class PredictionLog:
    """Append-only JSON lines, one file per UTC day, read by the drift monitor."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()

    def append(self, records: list[dict[str, Any]]) -> None:
        """Write records (each with `scored_at`, ids, model version, features, score)."""
        if not records:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        lines = "".join(json.dumps(record, default=str) + "\n" for record in records)
        with self._lock, (self.folder / f"predictions-{day}.jsonl").open("a") as log:
            log.write(lines)

    def read(self, since: datetime, until: datetime) -> list[dict[str, Any]]:
        """Records scored in [since, until]; naive times are read as UTC."""
        since, until = to_utc(since), to_utc(until)
        records: list[dict[str, Any]] = []
        for path in sorted(self.folder.glob(PREDICTION_LOG_GLOB)):
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if since <= datetime.fromisoformat(record["scored_at"]) <= until:
                    records.append(record)
        return records
