"""The `mlflow` actuator: request shapes against a scripted receiver, and the real thing
against a real `mlflow server` with a SQLite backend (MLflow Model Registry REST API,
mlflow/protos/model_registry.proto; quirks in shared/reference/apis.md section 1)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import requests

from tests.actuators.kube_fixtures import make_context
from tests.http_receiver import Receiver, Reply
from watchdog.actuators.mlflow import MlflowActuator
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(60)
NOT_SET = Reply(400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "Registered model alias champion not found."})


def at(version: str, name: str = "fraud-detector") -> Reply:
    return Reply(200, {"model_version": {"name": name, "version": version, "aliases": ["champion"]}})


def actuator(url: str, **options: object) -> MlflowActuator:
    options.setdefault("backoff", 0.01)
    return MlflowActuator("registry", MlflowActuator.Options(tracking_uri=url, **options))


def test_sets_the_alias_with_the_version_as_a_json_string(receiver: Receiver) -> None:
    receiver.script(at("2"), Reply(200, {}))

    result = actuator(receiver.url(""), model="fraud-detector").apply(make_context("1"), threading.Event())

    read, write = receiver.requests
    assert read.method == "GET"
    assert read.path == "/api/2.0/mlflow/registered-models/alias?name=fraud-detector&alias=champion"
    assert write.method == "POST" and write.path == "/api/2.0/mlflow/registered-models/alias"
    assert write.headers["Content-Type"] == "application/json"
    assert write.json == {"name": "fraud-detector", "alias": "champion", "version": "1"}
    assert result == "alias champion of fraud-detector → version 1 (was version 2)"


def test_model_from_a_name_colon_version(receiver: Receiver) -> None:
    receiver.script(NOT_SET, Reply(200, {}), at("7", "ranker"))
    act = actuator(receiver.url(""), alias="production")

    assert act.apply(make_context("ranker:7"), threading.Event()).endswith("(alias was not set)")
    assert receiver.requests[1].json == {"name": "ranker", "alias": "production", "version": "7"}
    assert act.current_version(make_context("ranker:7")) == "ranker:7"


def test_already_pointing_at_the_version_writes_nothing(receiver: Receiver) -> None:
    receiver.script(at("1"))

    result = actuator(receiver.url(""), model="fraud-detector").apply(make_context("1"), threading.Event())

    assert [r.method for r in receiver.requests] == ["GET"]
    assert "already points at version 1" in result


def test_an_unset_alias_is_an_unknown_current_version(receiver: Receiver) -> None:
    receiver.script(NOT_SET)

    assert actuator(receiver.url(""), model="fraud-detector").current_version(make_context("1")) is None


def test_a_missing_version_is_reported_with_mlflows_message(receiver: Receiver) -> None:
    receiver.script(at("2"), Reply(404, {"error_code": "RESOURCE_DOES_NOT_EXIST",
                                         "message": "Model Version (name=fraud-detector, version=99) not found"}))

    with pytest.raises(ActuatorError) as err:
        actuator(receiver.url(""), model="fraud-detector").apply(make_context("99"), threading.Event())

    assert str(err.value) == ("setting alias champion of fraud-detector to version 99 failed: 404 "
                              "RESOURCE_DOES_NOT_EXIST: Model Version (name=fraud-detector, version=99) not found "
                              "(check the model name and that the version exists)")


def test_server_errors_are_retried(receiver: Receiver) -> None:
    receiver.script(503, at("2"), 503, Reply(200, {}))

    actuator(receiver.url(""), model="fraud-detector").apply(make_context("1"), threading.Event())

    assert len(receiver.requests) == 4


def test_verify_reads_the_alias_back(receiver: Receiver) -> None:
    receiver.script(at("2"), at("1"))
    act = actuator(receiver.url(""), model="fraud-detector")

    with pytest.raises(ActuatorError, match="points at version 2, expected version 1"):
        act.verify(make_context("1"), threading.Event())
    assert act.verify(make_context("1"), threading.Event()) == "alias champion of fraud-detector points at version 1"


def test_token_is_sent_and_never_shown(receiver: Receiver) -> None:
    token = "mlflow-secret-token-42424242"
    receiver.script(lambda req: Reply(401, {"error_code": "UNAUTHENTICATED",
                                            "message": f"bad token {req.headers['Authorization']}"}))

    with pytest.raises(ActuatorError) as err:
        actuator(receiver.url(""), model="m", token=token).apply(make_context("1"), threading.Event())

    assert receiver.requests[0].headers["Authorization"] == f"Bearer {token}"
    assert token not in str(err.value) and "401 UNAUTHENTICATED" in str(err.value)


@pytest.mark.parametrize("context, model, message", [
    (make_context("7"), None, "names no model"),
    (make_context("other:7"), "fraud-detector", "names model 'other', but this actuator manages 'fraud-detector'"),
    (make_context("v7"), "fraud-detector", "MLflow model versions are numbers"),
    (make_context(None), "fraud-detector", "no version to roll back to"),
])
def test_versions_that_cannot_be_mapped(receiver: Receiver, context: Any, model: str | None, message: str) -> None:
    with pytest.raises(ActuatorError, match=message):
        actuator(receiver.url(""), model=model).apply(context, threading.Event())
    assert receiver.requests == []


@pytest.mark.parametrize("options, message", [
    ({"tracking_uri": "mlflow:5000"}, "http:// or https://"),
    ({"tracking_uri": "http://m", "alias": "latest"}, "reserved"),
    ({"tracking_uri": "http://m", "alias": "v2"}, "reserved"),
    ({"tracking_uri": "http://m", "alias": "champ ion"}, "only letters"),
])
def test_unusable_options_are_rejected(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MlflowActuator("registry", MlflowActuator.Options(**options))


# --- a real MLflow server -------------------------------------------------------------------

def _api(url: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = requests.request(method, f"{url}/api/2.0/mlflow{path}", json=body, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_rolls_the_champion_alias_back_on_a_real_mlflow_server(mlflow_server: str) -> None:
    url = mlflow_server
    _api(url, "POST", "/registered-models/create", {"name": "fraud-detector"})
    for n in (1, 2):
        created = _api(url, "POST", "/model-versions/create",
                       {"name": "fraud-detector", "source": f"s3://bucket/fraud/m{n}"})
        assert created["model_version"]["version"] == str(n)
    _api(url, "POST", "/registered-models/alias", {"name": "fraud-detector", "alias": "champion", "version": "2"})
    act = actuator(url, model="fraud-detector", retries=0)
    context = make_context("1", extra={"component": "model", "from_version": "2", "to_version": "1"})

    assert act.current_version(context) == "2"
    result = act.apply(context, threading.Event())

    assert result == "alias champion of fraud-detector → version 1 (was version 2)"
    got = requests.get(f"{url}/api/2.0/mlflow/registered-models/alias",
                       params={"name": "fraud-detector", "alias": "champion"}, timeout=30).json()
    assert got["model_version"]["version"] == "1"
    assert act.verify(context, threading.Event()) == "alias champion of fraud-detector points at version 1"
    assert act.current_version(context) == "1"
    assert "already points" in act.apply(context, threading.Event())
    # An alias that is not set yet: MLflow answers 400, read as "unknown".
    assert actuator(url, model="fraud-detector", alias="challenger", retries=0).current_version(context) is None
    with pytest.raises(ActuatorError, match="404 RESOURCE_DOES_NOT_EXIST"):
        act.apply(make_context("99"), threading.Event())
