"""The Fire Insights simulator over real HTTP: auth, lifecycle, endpoints, faults, admin API, CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

# The fixtures come from the pytest11 entry point (airflow_provider_sparkflows.testing.pytest_plugin).
from airflow_provider_sparkflows.testing.pytest_plugin import SimulatorFactory
from airflow_provider_sparkflows.testing.simulator import (
    STATUS_CODES,
    FireInsightsSimulator,
    decode_jwt_payload,
    make_jwt,
)
from tests.conftest import wait_until

TIMEOUT = 5


class Client:
    """Just enough of a Fire Insights client to talk to the simulator in tests."""

    def __init__(self, sim: FireInsightsSimulator, auth: str = "token", token: str | None = None) -> None:
        self.sim = sim
        self.session = requests.Session()
        value = sim.token if token is None else token
        if auth == "token":
            self.session.headers["token"] = value
        elif auth == "bearer":
            self.session.headers["Authorization"] = f"Bearer {value}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.get(self.sim.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return self.session.post(self.sim.url + path, **kwargs)

    def execute(self, workflow_id: int | str, program_parameters: str = "", **kwargs: Any
                ) -> requests.Response:
        body = {"workflowId": workflow_id, "programParameters": program_parameters}
        return self.post("/api/v1/workflow/execute", json=body, **kwargs)

    def run(self, workflow_id: int | str, program_parameters: str = "") -> int:
        response = self.execute(workflow_id, program_parameters)
        assert response.status_code == 200, response.text
        return int(response.text)

    def status(self, execution_id: int) -> str:
        response = self.get(f"/api/v1/workflow-executions/{execution_id}/status")
        assert response.status_code == 200, response.text
        return response.text

    def execution(self, execution_id: int) -> dict[str, Any]:
        response = self.get(f"/api/v1/workflowExecution/{execution_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())


class FakeClock:
    """A clock the test moves by hand, for exact lifecycle steps."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def client(fire_insights_simulator: FireInsightsSimulator) -> Client:
    return Client(fire_insights_simulator)


def admin(sim: FireInsightsSimulator, method: str, action: str, body: Any = None) -> requests.Response:
    return requests.request(method, f"{sim.admin_url}/{action}", json=body, timeout=TIMEOUT)


# ---------------------------------------------------------------------------------------------- auth


@pytest.mark.parametrize(
    ("auth_header", "presented", "expected"),
    [
        ("any", "token", 200), ("any", "bearer", 200), ("any", "none", 401),
        ("token", "token", 200), ("token", "bearer", 401),
        ("bearer", "bearer", 200), ("bearer", "token", 401),
    ],
)
def test_token_forms(
    fire_insights_simulator_factory: SimulatorFactory, auth_header: str, presented: str, expected: int
) -> None:
    sim = fire_insights_simulator_factory(auth_header=auth_header)
    response = Client(sim, auth=presented).execute(7)
    assert response.status_code == expected
    assert sim.execution_count() == (1 if expected == 200 else 0)
    if expected == 401:
        assert response.json() == {"error": "invalid_token", "error_description": "Invalid access token"}


def test_wrong_and_expired_tokens_are_rejected(fire_insights_simulator_factory: SimulatorFactory) -> None:
    sim = fire_insights_simulator_factory()
    assert Client(sim, token=sim.token + "x").execute(7).status_code == 401
    assert Client(sim, auth="bearer", token="").execute(7).status_code == 401
    expired = fire_insights_simulator_factory(token=make_jwt(expires_in_seconds=-5))
    response = Client(expired).get("/api/v1/workflow-executions/1/status")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert sim.execution_count() == 0


def test_make_jwt_is_hs512_with_millisecond_expiry() -> None:
    before_ms = time.time() * 1000
    token = make_jwt(sub="alice", expires_in_seconds=60, secret="s3cret")
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    assert header == {"alg": "HS512", "typ": "JWT"}
    payload = decode_jwt_payload(token)
    assert payload is not None and payload["sub"] == "alice"
    assert before_ms + 59_000 <= payload["exp"] <= time.time() * 1000 + 61_000
    expected = hmac.new(b"s3cret", f"{header_b64}.{payload_b64}".encode(), hashlib.sha512).digest()
    assert base64.urlsafe_b64decode(signature_b64 + "==") == expected
    assert decode_jwt_payload("not-a-jwt") is None


def test_fixture_gives_a_running_simulator_with_a_unique_token(
    fire_insights_simulator: FireInsightsSimulator,
    fire_insights_simulator_factory: SimulatorFactory,
) -> None:
    other = fire_insights_simulator_factory()
    assert fire_insights_simulator.running and other.running
    assert fire_insights_simulator.token != other.token
    assert fire_insights_simulator.port != other.port
    assert decode_jwt_payload(fire_insights_simulator.token) is not None


# ----------------------------------------------------------------------------------------- lifecycle


def test_lifecycle_follows_the_clock() -> None:
    clock = FakeClock()
    with FireInsightsSimulator("t", clock=clock) as sim:
        sim.add_workflow(7, duration=10, outcome="COMPLETED", starting_seconds=2, log_lines=["reading input"])
        client = Client(sim)
        execution_id = client.run(7, "--var datapath=s3://bucket/folder/")
        assert client.status(execution_id) == "STARTING"
        obj = client.execution(execution_id)
        assert obj["status"] == STATUS_CODES["STARTING"] and obj["endTime"] is None
        clock.advance(2)
        assert client.status(execution_id) == "RUNNING"
        assert "reading input" in client.get(f"/api/v1/workflow-executions/{execution_id}/logs/view").text
        clock.advance(10)
        assert client.status(execution_id) == "COMPLETED"
        obj = client.execution(execution_id)
        assert obj["id"] == execution_id and obj["analysisFlowId"] == 7
        assert obj["status"] == 2
        assert obj["startTime"] == int(1_700_000_000.0 * 1000)
        assert obj["endTime"] == obj["startTime"] + 12_000
        assert obj["uiWebUrl"].endswith(f"/#/view-workflow-result/{execution_id}")
        assert "programParameters" not in obj
        record = sim.executions[execution_id]
        assert record.program_parameters == "--var datapath=s3://bucket/folder/"
        assert record.workflow_id == 7 and record.status == "COMPLETED" and record.created == 1_700_000_000.0


def test_lifecycle_in_real_time(client: Client) -> None:
    sim = client.sim
    sim.add_workflow(7, duration=0.5, starting_seconds=0.3)
    execution_id = client.run(7)
    seen: list[str] = []

    def completed() -> bool:
        status = client.status(execution_id)
        if not seen or seen[-1] != status:
            seen.append(status)
        return status == "COMPLETED"

    wait_until(completed, timeout=5, interval=0.02, message="COMPLETED")
    assert seen == ["STARTING", "RUNNING", "COMPLETED"]


def test_failed_execution_log_ends_with_the_error(client: Client) -> None:
    client.sim.add_workflow(8, duration=0.1, outcome="FAILED", starting_seconds=0,
                            log_lines=["step 1", "step 2"], failure_message="Table sales not found")
    execution_id = client.run("8")
    client.sim.wait_for_status(execution_id, "FAILED", timeout=5)
    assert client.status(execution_id) == "FAILED"
    assert client.execution(execution_id)["status"] == 3
    log = client.get(f"/api/v1/workflow-executions/{execution_id}/logs/view").text.splitlines()
    assert "step 2" in log[-2]
    assert "ERROR" in log[-1] and "FAILED" in log[-1] and "Table sales not found" in log[-1]


def test_other_outcomes_and_never_ending_workflows() -> None:
    clock = FakeClock()
    with FireInsightsSimulator("t", clock=clock) as sim:
        client = Client(sim)
        for workflow_id, outcome in enumerate(["TIMEOUT", "KILLED", "STOPPED"], start=1):
            sim.add_workflow(workflow_id, duration=1, outcome=outcome, starting_seconds=0)
        sim.add_workflow(9, duration=None)
        ids = [client.run(w) for w in (1, 2, 3, 9)]
        clock.advance(3600)
        assert [client.status(i) for i in ids] == ["TIMEOUT", "KILLED", "STOPPED", "RUNNING"]


def test_wait_for_status_times_out_naming_the_status(client: Client) -> None:
    client.sim.add_workflow(7, duration=None)
    execution_id = client.run(7)
    with pytest.raises(TimeoutError, match=rf"execution {execution_id} still (STARTING|RUNNING)"):
        client.sim.wait_for_status(execution_id, "COMPLETED", timeout=0.1)


# -------------------------------------------------------------------------------------- stop and kill


def test_stop_goes_stopping_then_stopped() -> None:
    clock = FakeClock()
    with FireInsightsSimulator("t", clock=clock) as sim:
        client = Client(sim)
        sim.add_workflow(7, duration=None, starting_seconds=0, stopping_seconds=5)
        execution_id = client.run(7)
        response = client.post(f"/api/v1/workflow-execution/{execution_id}/stop")
        assert response.status_code == 200
        assert response.json()["status"] == "ok" and response.json()["message"]
        assert client.status(execution_id) == "STOPPING"
        assert client.execution(execution_id)["status"] == STATUS_CODES["STOPPING"]
        clock.advance(5)
        assert client.status(execution_id) == "STOPPED"
        assert client.execution(execution_id)["status"] == 1
        assert sim.executions[execution_id].stop_requested
        assert "Stop requested" in client.get(f"/api/v1/workflow-executions/{execution_id}/logs/view").text


def test_stop_in_real_time(client: Client) -> None:
    client.sim.add_workflow(7, duration=None, starting_seconds=0, stopping_seconds=0.1)
    execution_id = client.run(7)
    assert client.post(f"/api/v1/workflow-execution/{execution_id}/stop").ok
    assert client.sim.wait_for_status(execution_id, "STOPPED", timeout=5) == "STOPPED"


def test_kill_ends_killed_and_finished_executions_stay_put(client: Client) -> None:
    client.sim.add_workflow(7, duration=None, starting_seconds=0)
    client.sim.add_workflow(8, duration=0, starting_seconds=0)
    running, done = client.run(7), client.run(8)
    response = client.post(f"/api/v1/workflow-execution/{running}/kill")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    assert client.status(running) == "KILLED" and client.sim.executions[running].kill_requested
    client.sim.wait_for_status(done, "COMPLETED", timeout=5)
    assert "already ended" in client.post(f"/api/v1/workflow-execution/{done}/stop").json()["message"]
    assert "already ended" in client.post(f"/api/v1/workflow-execution/{done}/kill").text
    assert client.status(done) == "COMPLETED"
    assert not client.sim.executions[done].stop_requested


def test_stop_and_kill_methods(fire_insights_simulator_factory: SimulatorFactory) -> None:
    current = Client(fire_insights_simulator_factory())
    legacy = Client(fire_insights_simulator_factory(legacy_get_stop_kill=True))
    for client in (current, legacy):
        client.sim.add_workflow(7, duration=None)
    current_id, legacy_id = current.run(7), legacy.run(7)
    assert current.get(f"/api/v1/workflow-execution/{current_id}/stop").status_code == 405
    assert legacy.post(f"/api/v1/workflow-execution/{legacy_id}/stop").status_code == 405
    assert legacy.post(f"/api/v1/workflow-execution/{legacy_id}/kill").status_code == 405
    assert legacy.sim.status(legacy_id) in ("STARTING", "RUNNING")
    assert legacy.get(f"/api/v1/workflow-execution/{legacy_id}/kill").status_code == 200
    assert legacy.sim.status(legacy_id) == "KILLED"


# ------------------------------------------------------------------------------ answers and endpoints


@pytest.mark.parametrize(
    ("execute_answer", "body", "content_type"),
    [("number", "{id}", "text/plain"), ("json_number", "{id}", "application/json"),
     ("json_object", '{{"id": {id}}}', "application/json")],
)
def test_execute_answer_forms(
    fire_insights_simulator_factory: SimulatorFactory,
    execute_answer: str, body: str, content_type: str,
) -> None:
    sim = fire_insights_simulator_factory(execute_answer=execute_answer, first_execution_id=162)
    response = Client(sim).execute(7)
    assert response.status_code == 200
    assert response.text == body.format(id=162)
    assert response.headers["Content-Type"].startswith(content_type)
    assert list(sim.executions) == [162]


def test_status_as_json_string(fire_insights_simulator_factory: SimulatorFactory) -> None:
    client = Client(fire_insights_simulator_factory(status_answer="json_string"))
    execution_id = client.run(7)
    response = client.get(f"/api/v1/workflow-executions/{execution_id}/status")
    assert response.json() == "STARTING"
    assert response.headers["Content-Type"] == "application/json"


def test_listing_and_last(client: Client) -> None:
    response = client.get("/api/v1/last/workflow-execution/7")
    assert response.status_code == 200 and response.content == b""
    assert client.get("/api/v1/workflow-executions/workflows/7").json() == []
    first, other, second = client.run(7, "--var a=1"), client.run(8), client.run(7, "--var a=2")
    listing = client.get("/api/v1/workflow-executions/workflows/7").json()
    assert [e["id"] for e in listing] == [second, first]
    assert all(e["analysisFlowId"] == 7 for e in listing)
    assert client.get("/api/v1/last/workflow-execution/7").json()["id"] == second
    assert client.get("/api/v1/last/workflow-execution/8").json()["id"] == other
    assert client.sim.execution_count(7) == 2 and client.sim.execution_count() == 3


def test_unknown_things_answer_404_and_bad_bodies_400(
    fire_insights_simulator_factory: SimulatorFactory,
) -> None:
    sim = fire_insights_simulator_factory(auto_create_workflows=False)
    client = Client(sim)
    assert client.execute(7).status_code == 404
    sim.add_workflow(7)
    assert client.run(7) == 1
    for path in ("/api/v1/workflow-executions/99/status", "/api/v1/workflowExecution/99",
                 "/api/v1/workflow-executions/99/logs/view", "/api/v1/workflow-executions/workflows/99",
                 "/api/v1/last/workflow-execution/99", "/api/v1/no-such-endpoint"):
        assert client.get(path).status_code == 404, path
    for action in ("stop", "kill"):
        assert client.post(f"/api/v1/workflow-execution/99/{action}").status_code == 404
    assert client.post("/api/v1/workflow/execute", data="{not json").status_code == 400
    assert client.post("/api/v1/workflow/execute", json={"programParameters": ""}).status_code == 400
    assert client.execute("seven").status_code == 400
    assert sim.execution_count() == 1


def test_program_parameters_and_pass_through_fields(
    fire_insights_simulator_factory: SimulatorFactory,
) -> None:
    sim = fire_insights_simulator_factory(expose_program_parameters=True)
    client = Client(sim)
    body = {"workflowId": "7", "programParameters": "--var datapath=s3://b/f/ --var note='a b'",
            "sparkConfig": "spark.executor.memory=2g", "emailOnFailure": "ops@example.com"}
    execution_id = int(client.post("/api/v1/workflow/execute", json=body).text)
    obj = client.execution(execution_id)
    assert obj["programParameters"] == body["programParameters"]
    assert obj["emailOnFailure"] == "ops@example.com"
    record = sim.executions[execution_id]
    assert record.workflow_id == 7 and record.body["sparkConfig"] == "spark.executor.memory=2g"


def test_base_path(fire_insights_simulator_factory: SimulatorFactory) -> None:
    sim = fire_insights_simulator_factory(base_path="/fire/")
    assert sim.url == f"http://127.0.0.1:{sim.port}/fire"
    execution_id = Client(sim).run(7)
    without_prefix = f"http://127.0.0.1:{sim.port}/api/v1/workflow-executions/{execution_id}/status"
    assert requests.get(without_prefix, headers={"token": sim.token}, timeout=TIMEOUT).status_code == 404
    assert requests.get(f"{sim.url}/_sim/health", timeout=TIMEOUT).json()["status"] == "ok"


def test_requests_are_recorded(client: Client) -> None:
    execution_id = client.run(7, "--var x=1")
    client.status(execution_id)
    first, second = client.sim.requests
    assert (first.method, first.endpoint, first.path) == ("POST", "execute", "/api/v1/workflow/execute")
    assert first.headers["token"] == client.sim.token
    assert first.json()["programParameters"] == "--var x=1"
    assert (second.method, second.endpoint) == ("GET", "status")
    assert second.time >= first.time
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass
        first.method = "PUT"  # type: ignore[misc]
    assert client.sim.request_count("status") == 1


# -------------------------------------------------------------------------------------------- faults


def test_5xx_and_429_faults(client: Client) -> None:
    client.sim.inject_fault("status", "5xx", status=502)
    client.sim.inject_fault("status", "429", retry_after=3)
    execution_id = client.run(7)
    path = f"/api/v1/workflow-executions/{execution_id}/status"
    assert client.get(path).status_code == 502
    response = client.get(path)
    assert response.status_code == 429 and response.headers["Retry-After"] == "3"
    assert client.get(path).status_code == 200
    client.sim.inject_fault("execute", "5xx")
    assert client.execute(7).status_code == 503
    assert client.sim.execution_count() == 1


def test_slow_answer_trips_the_client_timeout(client: Client) -> None:
    client.sim.inject_fault("execute", "slow", delay=2.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        client.execute(7, timeout=0.3)
    # The call was handled before the answer was held back: the execution exists.
    assert client.sim.execution_count(7) == 1
    assert client.run(7) == 2


def test_dropped_connection(client: Client) -> None:
    client.sim.inject_fault("execute", "drop")
    with pytest.raises(requests.exceptions.ConnectionError):
        client.execute(7)
    assert client.sim.execution_count() == 0
    assert client.run(7) == 1


def test_malformed_body(client: Client) -> None:
    execution_id = client.run(7)
    client.sim.inject_fault("execution", "malformed")
    client.sim.inject_fault("status", "malformed", body="<html>oops</html>")
    response = client.get(f"/api/v1/workflowExecution/{execution_id}")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()
    assert client.get(f"/api/v1/workflow-executions/{execution_id}/status").text == "<html>oops</html>"
    assert client.execution(execution_id)["id"] == execution_id


def test_401_after_n_successful_calls(client: Client) -> None:
    execution_id = client.run(7)
    client.sim.inject_fault("status", "401_after", after=2)
    codes = [client.get(f"/api/v1/workflow-executions/{execution_id}/status").status_code for _ in range(4)]
    assert codes == [200, 200, 401, 200]


def test_execute_then_5xx_starts_the_execution(client: Client) -> None:
    client.sim.inject_fault("execute", "execute_then_5xx")
    response = client.execute(7, "--var datapath=s3://b/f/")
    assert response.status_code == 500
    (record,) = client.sim.executions.values()
    assert record.program_parameters == "--var datapath=s3://b/f/"
    last = client.get("/api/v1/last/workflow-execution/7").json()
    assert last["id"] == record.execution_id


def test_persistent_wildcard_faults_and_clearing(client: Client) -> None:
    client.sim.inject_fault("*", "5xx", times=None)
    assert [client.execute(7).status_code for _ in range(3)] == [503, 503, 503]
    assert client.get("/api/v1/workflow-executions/workflows/7").status_code == 503
    client.sim.clear_faults()
    assert client.execute(7).status_code == 200


def test_fault_validation(fire_insights_simulator: FireInsightsSimulator) -> None:
    sim = fire_insights_simulator
    with pytest.raises(ValueError, match="endpoint"):
        sim.inject_fault("nope", "5xx")
    with pytest.raises(ValueError, match="kind"):
        sim.inject_fault("status", "nope")
    with pytest.raises(ValueError, match="execute_then_5xx"):
        sim.inject_fault("status", "execute_then_5xx")
    with pytest.raises(ValueError, match="retry_after"):
        sim.inject_fault("status", "5xx", retry_after=1)
    assert sim.faults == []


# ----------------------------------------------------------------------------------------- admin API


def test_admin_api(client: Client) -> None:
    sim = client.sim
    response = admin(sim, "POST", "workflows", {"workflow_id": 11, "duration": None, "outcome": "FAILED",
                                                "log_lines": ["x"]})
    assert response.status_code == 201 and response.json()["duration"] is None
    assert sim.workflows[11].outcome == "FAILED"
    assert admin(sim, "POST", "faults", {"endpoint": "execute", "kind": "5xx", "times": 1}).status_code == 201
    assert client.execute(11).status_code == 503
    execution_id = client.run(11, "--var datapath=s3://b/f/")
    (execution,) = admin(sim, "GET", "executions").json()
    assert execution["id"] == execution_id and execution["program_parameters"] == "--var datapath=s3://b/f/"
    assert execution["workflow_id"] == 11 and execution["status"] in ("STARTING", "RUNNING")
    recorded = admin(sim, "GET", "requests").json()
    assert [r["endpoint"] for r in recorded] == ["execute", "execute"]
    config = admin(sim, "POST", "config", {"execute_answer": "json_object"}).json()
    assert config["execute_answer"] == "json_object" and client.execute(11).json() == {"id": execution_id + 1}
    assert admin(sim, "POST", "faults", {"endpoint": "status", "kind": "5xx", "times": None}).ok
    assert admin(sim, "POST", "faults/clear").ok and sim.faults == []
    assert admin(sim, "POST", "faults", {"endpoint": "x", "kind": "5xx"}).status_code == 400
    assert admin(sim, "POST", "config", {"execute_answer": "xml"}).status_code == 400
    assert admin(sim, "POST", "nope").status_code == 404
    assert admin(sim, "POST", "reset").ok
    assert sim.executions == {} and sim.requests == [] and sim.workflows == {}


# ------------------------------------------------------------------------------------- concurrency


def test_concurrent_executes_get_unique_ids(client: Client) -> None:
    ids: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        local = Client(client.sim)
        mine = [local.run(7) for _ in range(10)]
        with lock:
            ids.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert len(ids) == 80 and len(set(ids)) == 80
    assert client.sim.execution_count(7) == 80 and client.sim.request_count("execute") == 80


def test_stop_closes_the_port(fire_insights_simulator_factory: SimulatorFactory) -> None:
    sim = fire_insights_simulator_factory()
    client = Client(sim)
    client.run(7)  # leaves a keep-alive connection open
    url = sim.url
    sim.stop()
    assert not sim.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{url}/_sim/health", timeout=TIMEOUT)
    with pytest.raises(requests.exceptions.ConnectionError):
        client.execute(7)


# --------------------------------------------------------------------------------------------- CLI


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no line from the simulator within {timeout}s"
    return proc.stdout.readline()


@pytest.fixture
def cli_simulator() -> Iterator[tuple[subprocess.Popen[str], str]]:
    token = make_jwt(sub="cli")
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_sparkflows.testing.simulator", "--port", "0",
         "--auth-header", "token", "--workflow", "5:0.2:FAILED", "--workflow", "6:inf"],
        stdout=subprocess.PIPE, text=True,
        # The token through the environment, as the demo passes it: not visible in `ps`.
        env={**os.environ, "PYTHONUNBUFFERED": "1", "FIRE_INSIGHTS_SIMULATOR_TOKEN": token},
    )
    try:
        yield proc, token
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def test_cli_serves_until_sigterm(cli_simulator: tuple[subprocess.Popen[str], str]) -> None:
    proc, token = cli_simulator
    line = _read_line(proc, timeout=15)
    assert line.startswith("Fire Insights simulator listening on http://127.0.0.1:")
    url = line.rsplit(" ", 1)[1].strip()
    headers = {"token": token}
    body = {"workflowId": 5, "programParameters": "-v"}
    response = requests.post(f"{url}/api/v1/workflow/execute", json=body, headers=headers, timeout=TIMEOUT)
    execution_id = int(response.text)
    status_url = f"{url}/api/v1/workflow-executions/{execution_id}/status"
    wait_until(lambda: requests.get(status_url, headers=headers, timeout=TIMEOUT).text == "FAILED",
               timeout=5, message="FAILED from the CLI simulator")
    bearer = {"Authorization": f"Bearer {token}"}
    assert requests.get(status_url, headers=bearer, timeout=TIMEOUT).status_code == 401
    workflows = requests.get(f"{url}/_sim/workflows", timeout=TIMEOUT).json()
    assert {w["workflow_id"]: w["duration"] for w in workflows} == {5: 0.2, 6: None}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
