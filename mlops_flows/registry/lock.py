"""The registry lock: a Prefect global concurrency limit of one slot per registered model.

MLflow has no compare-and-set on aliases. Every promotion, approval and rollback takes this
lock before it reads the champion and moves it, so two workers talking to the same Prefect API
can never both move `champion` from the same version.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from mlops_flows.errors import MlopsError


class RegistryLockError(MlopsError):
    """The registry lock could not be taken in time; nothing was changed."""


RETRY_SECONDS = 1.0


def lock_name(model_name: str) -> str:
    return f"mlops-registry-{model_name}"


@contextmanager
def registry_lock(model_name: str, timeout_seconds: float) -> Iterator[None]:
    """Hold the model's registry lock; create the one-slot limit on first use."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.logging import get_logger

    name = lock_name(model_name)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another worker created it meanwhile
                limit = GlobalConcurrencyLimitCreate(name=name, limit=1)
                client.create_global_concurrency_limit(limit)
    deadline = time.monotonic() + timeout_seconds
    with ExitStack() as held:
        while True:
            remaining = deadline - time.monotonic()
            try:
                held.enter_context(
                    concurrency(name, occupy=1, timeout_seconds=max(remaining, 1), strict=True)
                )
                break
            except TimeoutError as error:
                raise RegistryLockError(
                    f"The registry lock '{name}' was not free within {timeout_seconds:.0f} s: "
                    "another promotion or rollback holds it (see Concurrency in the Prefect "
                    "UI). Nothing was changed; try again, or raise "
                    "MLOPS_GOVERNANCE__LOCK_TIMEOUT_SECONDS."
                ) from error
            except ConcurrencySlotAcquisitionError as error:
                # The API answered an error, e.g. 500 while its database restarts: ask again.
                get_logger("mlops").warning(
                    "Taking the registry lock '%s' failed (%s); asking again", name, error
                )
                if remaining < RETRY_SECONDS:
                    raise RegistryLockError(
                        f"The Prefect API kept failing to hand out the registry lock '{name}' "
                        f"for {timeout_seconds:.0f} s ({error}). Nothing was changed; check the "
                        "Prefect server and its database, then try again."
                    ) from error
                time.sleep(RETRY_SECONDS)
        yield
