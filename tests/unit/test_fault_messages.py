"""What the code says when things break: dead tracking server, broken files, missing features."""

from __future__ import annotations

import http.server
import socket
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_flows.adapters import tracking
from mlops_flows.adapters.features import LabelsError, read_labels
from mlops_flows.logic.keys import TrainingSetKeys
from mlops_flows.serving import scoring
from mlops_flows.settings import Settings

KEYS = TrainingSetKeys("customer_id", "event_timestamp", "churned")


def _online(**columns: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"customer_id": [1, 2, 3], **columns})


def test_model_input_passes_complete_rows() -> None:
    frame = scoring.model_input(_online(a=[1.0, 2.0, 3.0], b=["x", "y", "z"]), "customer_id", "ab")
    assert list(frame.columns) == ["customer_id", "a", "b"]


def test_model_input_names_ids_without_any_feature_as_unknown() -> None:
    online = _online(a=[1.0, np.nan, np.nan], b=["x", None, "z"])
    with pytest.raises(scoring.UnknownEntitiesError) as raised:
        scoring.model_input(online, "customer_id", ["a", "b"])
    assert type(raised.value) is scoring.UnknownEntitiesError  # not "incomplete": all are null
    assert raised.value.ids == [2]


def test_model_input_refuses_rows_with_some_features_missing() -> None:
    online = _online(a=[1.0, np.nan, 3.0], b=["x", "y", None], c=[1, 2, 3])
    with pytest.raises(scoring.IncompleteFeaturesError) as raised:
        scoring.model_input(online, "customer_id", ["a", "b", "c"])
    assert (raised.value.ids, raised.value.columns) == ([2, 3], ["a", "b"])
    assert str(raised.value).startswith(
        "Online features of customer id(s) 2, 3 are incomplete (missing: a, b)"
    )
    assert "mlops features materialize" in str(raised.value)
    assert "null in the feature source" not in str(raised.value)  # nothing said it was stored


def test_model_input_tells_a_stored_null_from_a_value_never_stored() -> None:
    online = _online(a=[1.0, np.nan, np.nan], b=["x", None, "z"])
    stored = pd.DataFrame({"a": [True, True, False], "b": [True, True, True]})
    with pytest.raises(scoring.IncompleteFeaturesError) as raised:
        scoring.model_input(online, "customer_id", ["a", "b"], stored)
    # Id 2 has every feature null, but both were stored: a data problem, not an unknown id.
    assert (raised.value.ids, raised.value.columns, raised.value.nulls) == (
        [2, 3],
        ["a", "b"],
        ["a", "b"],
    )
    message = str(raised.value)
    assert "null in the feature source: a, b" in message
    assert "not in the online store: a (" in message  # id 3's was never stored


def test_model_load_error_says_which_version_and_why() -> None:
    error = scoring.ModelLoadError("churn", "7", "sqlite:///x.db", OSError("File is not a zip"))
    assert str(error).startswith(
        "Model churn v7 could not be loaded from sqlite:///x.db (OSError: File is not a zip)"
    )
    assert error.version == "7"


def test_library_environment_bounds_mlflow_http_retries(tmp_path: Path) -> None:
    environment = Settings(home=tmp_path).library_environment()
    assert environment["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "10"
    assert environment["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "1"
    assert environment["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] == "1"


def test_probing_a_closed_port_names_the_server_and_how_to_start_it() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(tracking.TrackingServerDownError) as raised:
        tracking._probe_server(uri, timeout=2.0)
    assert f"MLflow tracking server {uri} is not reachable" in str(raised.value)
    assert "mlflow server --backend-store-uri" in str(raised.value)


def test_an_error_is_blamed_on_the_server_only_when_it_stopped_answering() -> None:
    class Healthy(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    error = OSError("connection reset")
    doing, left = "looking for a version", "Nothing was trained or registered."
    assert tracking.server_stopped("sqlite:///mlflow.db", error, doing, left) is None
    server = http.server.HTTPServer(("127.0.0.1", 0), Healthy)
    uri = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert tracking.server_stopped(uri, error, doing, left) is None  # it answers
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    down = tracking.server_stopped(uri, error, doing, left)  # nothing listens there now
    assert down is not None
    assert str(down).startswith(f"MLflow tracking server {uri} stopped answering while {doing}")
    assert "(OSError: connection reset...). Nothing was trained or registered." in str(down)


@pytest.mark.parametrize(
    "damage",
    [lambda data: data[: len(data) // 2], lambda data: b"", lambda data: b"a,b\n1,2\n"],
    ids=["truncated", "empty", "csv"],
)
def test_an_unreadable_label_file_is_named(tmp_path: Path, damage: object) -> None:
    path = tmp_path / "labels.parquet"
    pd.DataFrame(
        {
            "customer_id": [1],
            "event_timestamp": [pd.Timestamp("2026-01-01", tz="UTC")],
            "churned": [0],
        }
    ).to_parquet(path)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(LabelsError, match=rf"Label file {path} is not readable parquet"):
        read_labels(path, KEYS)
