"""The online scoring service."""

from __future__ import annotations

from pydantic import Field, SecretStr

from mlops_flows.settings.group import Group


class ServingSettings(Group):
    """The online scoring service (`mlops serve`)."""

    host: str = Field(default="127.0.0.1", description="Address the service binds.")
    port: int = Field(default=8000, description="Port the service binds.")
    url: str | None = Field(
        default=None,
        description="Base URL at which the flows reach the service (reload, smoke check); empty "
        "means http://<host>:<port>. A setting of the worker, never a run parameter.",
    )
    reload_token: SecretStr | None = Field(
        default=None,
        description="Bearer token of the admin endpoints; empty means one is generated at start "
        "and written to `serving/reload-token` (mode 0600) in the workspace.",
    )
    max_batch_size: int = Field(default=100, ge=1, description="Most entity ids in one request.")
    max_body_bytes: int = Field(
        default=65536,
        ge=1024,
        description="Largest request body the service reads (413 above, before parsing it).",
    )
    alias_poll_seconds: float = Field(
        default=10.0, gt=0, description="How often the service checks whether `champion` moved."
    )
    request_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Timeout of the flows' calls to the service."
    )

    def base_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"
