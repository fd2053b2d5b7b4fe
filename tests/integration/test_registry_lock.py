"""The registry lock on a real Prefect API: an API error while taking it (a database that
restarts answers 500 for a moment) is asked again; one that lasts is a clear error."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import pytest

from mlops_flows.registry.lock import RegistryLockError, lock_name, registry_lock

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_server")]
MODEL = "lock-test"


def _failing_first(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[int]:
    """Make Prefect's `concurrency` raise what a 500 from the API raises, `failures` times."""
    import prefect.concurrency.sync as sync
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError

    real = sync.concurrency
    calls: list[int] = []

    def concurrency(*args: Any, **kwargs: Any) -> AbstractContextManager[None]:
        calls.append(1)
        if len(calls) <= failures:
            raise ConcurrencySlotAcquisitionError("Unable to acquire: 500 Internal Server Error")
        return real(*args, **kwargs)

    monkeypatch.setattr(sync, "concurrency", concurrency)
    return calls


def _active_slots(model: str) -> int:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return int(client.read_global_concurrency_limit_by_name(lock_name(model)).active_slots)


def test_an_api_error_while_taking_the_lock_is_asked_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _failing_first(monkeypatch, failures=2)
    with registry_lock(MODEL, timeout_seconds=30):
        assert _active_slots(MODEL) == 1
    assert len(calls) == 3
    assert _active_slots(MODEL) == 0


def test_an_api_that_keeps_failing_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _failing_first(monkeypatch, failures=1000)
    with (
        pytest.raises(RegistryLockError, match=r"kept failing.*Nothing was changed"),
        registry_lock(MODEL, timeout_seconds=3),
    ):
        pytest.fail("the lock was taken")
    assert _active_slots(MODEL) == 0
