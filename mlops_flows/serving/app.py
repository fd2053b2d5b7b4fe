"""The online scoring service: the champion model on Feast online features, over HTTP."""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, cast

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from threadpoolctl import ThreadpoolController

from mlops_flows.adapters import features, online_store
from mlops_flows.errors import MlopsError
from mlops_flows.logic import training
from mlops_flows.ops.workspace import Workspace
from mlops_flows.registry import versions as registry
from mlops_flows.serving import scoring
from mlops_flows.serving.contract import (
    HEALTH,
    PREDICT,
    RELOAD,
    Health,
    Prediction,
    PredictionLog,
    PredictRequest,
    PredictResponse,
    ReloadResponse,
    reload_token,
)
from mlops_flows.serving.scoring import ServedModel
from mlops_flows.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

logger = logging.getLogger(__name__)
EXAMPLE_BODY = '{"customer_ids": [1001, 1002]}'
# Why a champion cannot be swapped in; the service keeps the model it has and says why.
CANNOT_SERVE = (
    registry.NoChampionError,  # and UngovernedChampionError: an alias moved around governance
    registry.UntrustedModelError,
    scoring.IncompatibleModelError,
    scoring.ModelLoadError,
)


class EmptyTokenError(MlopsError):
    """The admin token is empty, which would let anyone reload."""


class ScoringService:
    """What the endpoints share: the feature store, the served model, the log, the token."""

    def __init__(self, settings: Settings) -> None:
        from mlflow import MlflowClient

        self.settings = settings
        self.client = MlflowClient(settings.tracking_uri)
        version = champion_to_serve(settings, self.client)  # cheap: no champion, no service
        self.token = reload_token(settings, create=True)
        if not self.token.strip():
            raise EmptyTokenError(
                "The reload token is empty: unset MLOPS_SERVING__RELOAD_TOKEN to have one made, "
                "or set it to a long random value."
            )
        self.store = features.open_store(settings.features.repo_path)
        self.feature_service = features.get_feature_service(
            self.store, settings.features.feature_service
        )
        self.service_features = [
            feature.name
            for projection in self.feature_service.feature_view_projections
            for feature in projection.features
        ]
        self.stored_features = online_store.stored_feature_names(self.store, self.feature_service)
        self.served = self._load(version)
        self._threads = ThreadpoolController()  # after the model: it finds the loaded OpenMP
        folder = Workspace(settings.home_resolved).predictions
        folder.mkdir(parents=True, exist_ok=True)
        self.log = PredictionLog(folder)
        self._reload_lock = threading.Lock()
        self.alert: str | None = None  # why `champion` is not what is served, while it lasts
        self._stop = threading.Event()
        self.watcher = threading.Thread(target=self._watch, name="champion-watcher", daemon=True)

    def predict(self, customer_ids: list[int]) -> PredictResponse:
        """Score ids with their online features; every prediction is logged, and every id
        refused for missing features."""
        served = self.served  # one reference for the whole request: a reload cannot split it
        key = self.settings.features.entity_key
        response = self.store.get_online_features(
            features=self.feature_service, entity_rows=[{key: i} for i in customer_ids]
        )
        stored = online_store.stored_values(response, self.stored_features)
        online = response.to_df()
        try:
            frame = scoring.model_input(online, key, served.feature_names, stored)
        except scoring.IncompleteFeaturesError:
            name, now = self.feature_service.name, datetime.now(UTC)
            self.log.append(scoring.refusal_records(online, served, name, key, now))
            raise
        # One OpenMP thread (multithreaded predict is ~20x slower for a few rows). The limit is
        # the calling thread's own, so concurrent requests do not undo each other's; and a
        # controller made once skips the library scan threadpool_limits does on every call.
        with self._threads.limit(limits=1, user_api="openmp"):
            scores = served.model.predict_proba(frame[list(served.feature_names)])[:, 1]
        records = scoring.prediction_records(
            frame, scores, served, self.feature_service.name, key, datetime.now(UTC)
        )
        self.log.append(records)
        return PredictResponse(
            model_name=served.name,
            model_version=served.version,
            feature_service=self.feature_service.name,
            predictions=[
                Prediction(customer_id=r["customer_id"], churn_probability=r["churn_probability"])
                for r in records
            ],
        )

    def reload(self) -> ReloadResponse:
        """Load the version `champion` points at now and swap it in whole."""
        with self._reload_lock, self._alerting():
            return self._swap_to(champion_to_serve(self.settings, self.client))

    def reload_if_moved(self) -> ReloadResponse | None:
        """Reload only when `champion` points at another version than the one served."""
        with self._reload_lock, self._alerting():
            # The alias alone on every poll; the audit history only when it moved.
            name = self.settings.mlflow.model_name
            if registry.champion_version(self.client, name) == self.served.version:
                return None
            return self._swap_to(champion_to_serve(self.settings, self.client))

    @contextmanager
    def _alerting(self) -> Iterator[None]:
        """Keep why the champion cannot be served (health shows it) until one is again."""
        try:
            yield
        except CANNOT_SERVE as error:
            self.alert = f"{error} Still serving v{self.served.version}."
            raise
        self.alert = None

    def _swap_to(self, version: str) -> ReloadResponse:
        previous = self.served
        self.served = self._load(version)  # one assignment: a request sees the old or the new
        logger.info("Serving %s v%s (was v%s)", previous.name, version, previous.version)
        return ReloadResponse(model_version=version, previous_version=previous.version)

    def stop_watching(self) -> None:
        self._stop.set()
        self.watcher.join()

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.serving.alias_poll_seconds):
            try:
                self.reload_if_moved()
            except registry.UngovernedChampionError:
                logger.error("%s", self.alert)  # every poll, while the alias stays moved
            except CANNOT_SERVE:
                logger.warning("%s", self.alert)
            except Exception:
                logger.exception(
                    "Checking the champion failed; still serving v%s", self.served.version
                )

    def _load(self, version: str) -> ServedModel:
        name, uri = self.settings.mlflow.model_name, self.settings.tracking_uri
        try:
            model = registry.load_version(uri, name, version)
        except registry.UntrustedModelError:
            raise
        except Exception as error:  # skops/zip/OS/MLflow errors alike: the version cannot serve
            raise scoring.ModelLoadError(name, version, uri, error) from error
        served = ServedModel(
            name,
            version,
            model,
            tuple(training.model_feature_names(model)),
            training.known_categories(model),
        )
        scoring.check_model_columns(served, self.service_features)
        return served


def champion_to_serve(settings: Settings, client: MlflowClient | None = None) -> str:
    """The version `champion` points at, or an error saying how to get one."""
    from mlflow import MlflowClient

    client = client or MlflowClient(settings.tracking_uri)
    return registry.require_champion(client, settings.mlflow.model_name, settings.tracking_uri)


class BodyTooLargeError(HTTPException):
    """A request body past the service's limit (`serving.max_body_bytes`)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"The request body is larger than {limit} bytes (MLOPS_SERVING__MAX_BODY_BYTES): "
            "send fewer ids per request.",
        )


class BodyLimit:
    """ASGI middleware: a body longer than `limit` is refused with 413 before the app parses it,
    whether its Content-Length says so or its chunks add up to it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse(
                {"detail": BodyTooLargeError(self.limit).detail},
                status_code=HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise BodyTooLargeError(self.limit)  # answered by FastAPI's HTTPException handler
            return message

        await self.app(scope, limited, send)


def _scoring(request: Request) -> ScoringService:
    return cast(ScoringService, request.app.state.scoring)


Service = Annotated[ScoringService, Depends(_scoring)]


def create_app(settings: Settings) -> FastAPI:
    """The scoring app; the champion is loaded at start-up, which fails without one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = ScoringService(settings)
        app.state.scoring = service
        service.watcher.start()
        try:
            yield
        finally:
            service.stop_watching()

    app = FastAPI(title="churn scoring", lifespan=lifespan)
    app.add_middleware(BodyLimit, limit=settings.serving.max_body_bytes)
    limit = settings.serving.max_batch_size

    @app.get(HEALTH)
    def health(service: Service) -> Health:
        served = service.served
        return Health(
            status="ok",
            model_name=served.name,
            model_version=served.version,
            feature_service=service.feature_service.name,
            alert=service.alert,
        )

    @app.post(PREDICT)
    def predict(body: PredictRequest, service: Service) -> PredictResponse:
        ids = body.customer_ids
        if not ids:
            raise HTTPException(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                f"customer_ids is empty: send 1 to {limit} ids, like {EXAMPLE_BODY}.",
            )
        if len(ids) > limit:
            raise HTTPException(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"{len(ids)} customer ids in one request; the limit is {limit}: split the batch.",
            )
        if too_large := scoring.out_of_range_ids(ids):
            raise HTTPException(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                f"customer id(s) {too_large[:5]} do not fit a 64-bit integer key.",
            )
        try:
            return service.predict(ids)
        except scoring.UnknownEntitiesError as error:
            raise HTTPException(HTTPStatus.NOT_FOUND, str(error)) from None

    @app.post(RELOAD)
    def reload(
        service: Service, authorization: Annotated[str | None, Header()] = None
    ) -> ReloadResponse:
        expected = f"Bearer {service.token}".encode()
        if authorization is None or not secrets.compare_digest(authorization.encode(), expected):
            raise HTTPException(
                HTTPStatus.UNAUTHORIZED,
                "Send `Authorization: Bearer <token>`: the token is MLOPS_SERVING__RELOAD_TOKEN "
                "or the file serving/reload-token in the service's workspace.",
                headers={"WWW-Authenticate": "Bearer"},
            )
        try:
            return service.reload()
        except CANNOT_SERVE:
            raise HTTPException(HTTPStatus.CONFLICT, service.alert) from None

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = error.errors()
        problems = [_problem(e) for e in errors[:20]]  # 10,000 bad ids need not 10,000 lines
        listed = "; ".join(f"{'.'.join(p['loc'][1:]) or 'body'}: {p['msg']}" for p in problems[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        return JSONResponse(
            {
                "detail": f"Invalid request: {listed}{more}. Send JSON like {EXAMPLE_BODY}.",
                "errors": problems,
            },
            status_code=HTTPStatus.UNPROCESSABLE_ENTITY,
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        logger.exception("Unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse(
            {"detail": "Internal error; it is logged by the service."},
            status_code=HTTPStatus.INTERNAL_SERVER_ERROR,
        )

    return app


def _problem(error: Any) -> dict[str, Any]:
    if error["type"] == "json_invalid":  # its location is a character offset, not a field
        reason = error.get("ctx", {}).get("error", "")
        return {"loc": ["body"], "msg": f"not valid JSON: {reason}", "type": error["type"]}
    return {"loc": [str(part) for part in error["loc"]], "msg": error["msg"], "type": error["type"]}


def serve(settings: Settings) -> None:
    """Run the service in this process with one worker until interrupted."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=settings.serving.host,
        port=settings.serving.port,
        workers=1,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
