"""A small client of the online scoring service (see `mlops_flows/serving/contract.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from mlops_flows.errors import MlopsError
from mlops_flows.serving.contract import (
    HEALTH,
    PREDICT,
    RELOAD,
    Health,
    PredictResponse,
    ReloadResponse,
)

Response = TypeVar("Response", bound=BaseModel)


class ServiceError(MlopsError):
    """The scoring service could not do what was asked."""


class ServiceUnavailableError(ServiceError):
    """The service cannot be reached, timed out, or failed on its side (5xx)."""


class ServiceRejectedError(ServiceError):
    """The service answered, but refused the request (4xx) or broke the contract."""


class ServiceClient:
    """Health, predictions and reload of one running service, with typed answers."""

    def __init__(self, base_url: str, token: str, timeout: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def health(self) -> Health:
        """Which model the service serves, and whether it is ready."""
        return self._call("GET", HEALTH, Health)

    def predict(self, customer_ids: Sequence[int]) -> PredictResponse:
        """Churn probabilities of the given customers, from online features."""
        body = {"customer_ids": [int(customer_id) for customer_id in customer_ids]}
        return self._call("POST", PREDICT, PredictResponse, json=body)

    def reload(self) -> ReloadResponse:
        """Ask the service to load the version `champion` points at now."""
        headers = {"Authorization": f"Bearer {self._token}"}
        return self._call("POST", RELOAD, ReloadResponse, headers=headers)

    def _call(
        self, method: str, path: str, response_type: type[Response], **request: Any
    ) -> Response:
        url = f"{self.base_url}{path}"
        try:
            response = self._http.request(method, path, **request)
        except httpx.TimeoutException as error:
            raise ServiceUnavailableError(
                f"{method} {url} timed out after {self._http.timeout.read} s. Check that the "
                "scoring service is running and not overloaded (`mlops serve`), or raise "
                "MLOPS_SERVING__REQUEST_TIMEOUT_SECONDS."
            ) from error
        except httpx.TransportError as error:
            raise ServiceUnavailableError(
                f"{method} {url} failed: the scoring service is not reachable "
                f"({type(error).__name__}: {error}). Start it (`mlops serve`) or point "
                "MLOPS_SERVING__URL (or __HOST and __PORT) at the running one."
            ) from error
        if response.status_code >= 500:
            raise ServiceUnavailableError(
                f"{method} {url} answered {response.status_code}: {_detail(response)}. The "
                "service failed on its side; read its log, fix it and retry."
            )
        if response.status_code >= 400:
            raise ServiceRejectedError(
                f"{method} {url} answered {response.status_code}: {_detail(response)}."
                + (
                    " The reload token is wrong: use the service's token (MLOPS_SERVING__"
                    "RELOAD_TOKEN or `serving/reload-token` in the service's workspace)."
                    if response.status_code in (401, 403)
                    else ""
                )
            )
        try:
            return response_type.model_validate_json(response.content)
        except ValidationError as error:
            raise ServiceRejectedError(
                f"{method} {url} answered a body that is not a {response_type.__name__} "
                f"(service_contract.py): {error}"
            ) from error


def _detail(response: httpx.Response) -> str:
    """The error text the service sent, shortened."""
    text = response.text.strip()
    return text[:500] if text else response.reason_phrase
