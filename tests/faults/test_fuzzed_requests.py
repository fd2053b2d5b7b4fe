"""Arbitrary requests to the scoring service: always a 4xx (or a 200 for a valid one), never 5xx.

The service runs in this process (`service_runner.running_service`: uvicorn on a free loopback
port, lifespan on) on a private copy of the champion workspace. Hypothesis is derandomized
with a bounded number of examples and no deadline, so every run sends the same requests.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_flows.adapters import features, online_store
from mlops_flows.serving.contract import HEALTH, PREDICT, RELOAD, PredictResponse
from mlops_flows.serving.runner import running_service
from tests.support import END_OF_DATA, use_workspace

pytestmark = [
    pytest.mark.faults,
    pytest.mark.usefixtures("prefect_server"),
    # Hypothesis warns when the global `random` state changes while it draws an example. Here
    # other threads of this process change it: the service's (MLflow's SQLite store retries a
    # lock after a random sleep) and Prefect's (jittered event delivery). The strategies use
    # no `random`; under load the warning came on one draw and not on its replay, and failed
    # the test as flaky.
    pytest.mark.filterwarnings(
        "ignore:Do not use the `random` module inside strategies"
        ":hypothesis.errors.HypothesisDeprecationWarning"
    ),
]

KNOWN_IDS = range(1000, 1600)  # the customers of the SMALL simulation
FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def client(
    champion_home: tuple[Path, Any, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """The service on a copy of the champion workspace, its online store loaded."""
    home = tmp_path_factory.mktemp("fuzz") / "workspace"
    shutil.copytree(champion_home[0], home)
    with pytest.MonkeyPatch.context() as patch:
        copy = use_workspace(patch, home)
        online_store.materialize(features.open_store(copy.features.repo_path), END_OF_DATA)
        with running_service(copy) as url, httpx.Client(base_url=url, timeout=60) as http:
            yield http
            assert http.get(HEALTH).status_code == 200


def json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=20)
    )
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=5)
            | st.dictionaries(st.text(max_size=10), children, max_size=5)
        ),
        max_leaves=20,
    )


ID_LIKE = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.integers(min_value=KNOWN_IDS.start, max_value=KNOWN_IDS.stop - 1)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10)  # unicode ids, numeric strings
    | st.booleans()
    | st.none()
)
BODIES = st.one_of(
    json_values(),
    st.fixed_dictionaries({"customer_ids": st.lists(ID_LIKE, max_size=120)}),
    st.fixed_dictionaries({"customer_ids": json_values()}),
    st.fixed_dictionaries(
        {"customer_ids": st.lists(st.sampled_from(KNOWN_IDS), min_size=1, max_size=5)},
        optional={"extra": json_values(), "customer_id": ID_LIKE},
    ),
    st.dictionaries(st.text(max_size=15), json_values(), max_size=4),
)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "",
    ]
)


def _check(response: Any, sent: Any = None) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500], sent)
    if response.status_code == 200:
        body = PredictResponse.model_validate(response.json())
        assert all(0.0 <= p.churn_probability <= 1.0 for p in body.predictions)
        assert all(math.isfinite(p.churn_probability) for p in body.predictions)
    else:
        assert 400 <= response.status_code < 500
        detail = response.json()["detail"]
        assert detail, response.text


@FUZZ
@given(body=BODIES, content_type=CONTENT_TYPES)
def test_any_json_body_gets_a_4xx_or_a_valid_200(
    client: httpx.Client, body: Any, content_type: str
) -> None:
    content = json.dumps(body, allow_nan=True).encode()
    headers = {"content-type": content_type} if content_type else {}
    _check(client.post(PREDICT, content=content, headers=headers), body)


@FUZZ
@given(content=st.binary(max_size=300), content_type=CONTENT_TYPES)
def test_any_bytes_get_a_4xx(client: httpx.Client, content: bytes, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    _check(client.post(PREDICT, content=content, headers=headers), content)


@FUZZ
@given(
    token=st.text(
        st.characters(min_codepoint=0x20, exclude_categories=["Cs"], exclude_characters="\x7f"),
        max_size=60,
    )
)
def test_any_wrong_reload_token_is_a_401(client: httpx.Client, token: str) -> None:
    # Wrapped in x...x: HTTP forbids a header value that ends in white space (h11 refuses it).
    header = f"Bearer x{token}x".encode()
    response = client.post(RELOAD, headers=[(b"authorization", header)])
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(
    ("content", "status"),
    [
        # Past MLOPS_SERVING__MAX_BODY_BYTES (64 KiB): refused before they are read.
        pytest.param(json.dumps({"customer_ids": list(range(100_000))}), 413, id="100k-ids"),
        pytest.param(json.dumps({"customer_ids": ["x" * 5_000_000]}), 413, id="5MB-string-id"),
        pytest.param("[" * 100_000 + "]" * 100_000, 413, id="100k-deep-nesting"),
        pytest.param('{"customer_ids": [' + "1," * 1_000_000 + "1]}", 413, id="1M-ids"),
        # Within it: read, parsed, refused for what they hold.
        pytest.param(json.dumps({"customer_ids": ["x" * 60_000]}), 422, id="60kB-string-id"),
        pytest.param("[" * 30_000 + "]" * 30_000, 400, id="30k-deep-nesting"),
        pytest.param(json.dumps({"customer_ids": list(range(5_000))}), 413, id="5k-ids"),
        pytest.param('{"customer_ids": [NaN, Infinity, -Infinity]}', 422, id="nan-inf"),
        pytest.param('{"customer_ids": [1e400]}', 422, id="float-overflow"),
        # Python refuses to parse integers of more than 4300 digits: FastAPI's generic 400.
        pytest.param('{"customer_ids": [' + "9" * 5000 + "]}", 400, id="5000-digit-int"),
    ],
)
def test_huge_and_extreme_bodies_get_a_4xx(client: httpx.Client, content: str, status: int) -> None:
    response = client.post(PREDICT, content=content, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text[:500]
    assert response.json()["detail"]
    assert client.get(HEALTH).status_code == 200


def test_other_methods_and_paths_get_a_4xx(client: httpx.Client) -> None:
    for method, path in [("GET", PREDICT), ("PUT", PREDICT), ("GET", RELOAD), ("GET", "/nope")]:
        assert 400 <= client.request(method, path).status_code < 500
    assert client.get(HEALTH).status_code == 200
