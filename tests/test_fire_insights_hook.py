"""FireInsightsHook against the Fire Insights simulator over real HTTP, and KMS against the moto server."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_sparkflows.fire_insights_api import (
    FireInsightsAmbiguousExecutionError,
    FireInsightsApiError,
    FireInsightsAuthError,
    FireInsightsConfigError,
    FireInsightsConnectionError,
    FireInsightsError,
    FireInsightsKmsError,
    FireInsightsNotFoundError,
    RetryPolicy,
)
from airflow_provider_sparkflows.hooks.fire_insights import FireInsightsHook
from airflow_provider_sparkflows.testing.simulator import FireInsightsSimulator, make_jwt
from tests.conftest import MotoServer, free_port, wait_until

FAST = RetryPolicy(max_attempts=4, initial_delay=0.05, max_delay=2.0, multiplier=2.0, jitter=0.1)
WORKFLOW = 7


@pytest.fixture
def token() -> str:
    """A token unique to the test, so a leak anywhere is attributable."""
    return make_jwt(sub=f"leak-check-{uuid.uuid4().hex}", expires_in_seconds=3 * 86400)


@pytest.fixture(autouse=True)
def no_token_in_logs(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], token: str
) -> Iterator[None]:
    """Fail any test whose logs (stdlib records, or Airflow's structlog output) show the token."""
    caplog.set_level(logging.DEBUG)
    yield
    printed = capfd.readouterr()
    for text in (caplog.text, printed.out, printed.err):
        assert token not in text
        assert token.split(".")[1] not in text


@pytest.fixture
def sim(token: str) -> Iterator[FireInsightsSimulator]:
    with FireInsightsSimulator(token=token) as simulator:
        simulator.add_workflow(WORKFLOW, duration=0.3, log_lines=[f"line {i}" for i in range(10)])
        yield simulator


@pytest.fixture
def connect(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Define an Airflow connection through an ``AIRFLOW_CONN_`` variable; returns its id."""

    def define(host: str, password: str | None = None, conn_id: str | None = None, **extra: Any) -> str:
        conn_id = conn_id or f"fi_{uuid.uuid4().hex[:10]}"
        payload: dict[str, Any] = {"conn_type": "fire_insights", "host": host, "extra": extra}
        if password is not None:
            payload["password"] = password
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(payload))
        return conn_id

    return define


@pytest.fixture
def hook(sim: FireInsightsSimulator, token: str, connect: Callable[..., str]) -> FireInsightsHook:
    return FireInsightsHook(connect(sim.url, token), retry_policy=FAST, timeout=2.0)


def raised(error_type: type[BaseException], call: Callable[[], Any], token: str | None = None) -> Any:
    """Run ``call``, expect ``error_type``, check the message never holds the token; return the error."""
    with pytest.raises(error_type) as info:
        call()
    if token is not None:
        assert token not in str(info.value)
        assert token not in repr(info.value.args)
    return info.value


async def araised(error_type: type[BaseException], coro: Any, token: str) -> Any:
    with pytest.raises(error_type) as info:
        await coro
    assert token not in str(info.value)
    return info.value


# ------------------------------------------------------------------------------------------ imports


def test_importing_the_hook_pulls_in_no_http_or_aws_client() -> None:
    code = (
        "import sys; import airflow.sdk; before = set(sys.modules); "
        "import airflow_provider_sparkflows.hooks.fire_insights; "
        "bad = [m for m in ('requests', 'aiohttp', 'boto3', 'botocore', 'aiobotocore', 'tenacity') "
        "if m in sys.modules and m not in before]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1:] in ([], [""])


# --------------------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("auth_header", ["token", "bearer"])
def test_run_and_watch_a_workflow(token: str, connect: Callable[..., str], auth_header: str) -> None:
    with FireInsightsSimulator(token=token, auth_header=auth_header, base_path="/fire") as sim:
        sim.add_workflow(WORKFLOW, duration=0.2, log_lines=[f"line {i}" for i in range(10)])
        conn_id = connect(sim.url, token, auth_header=auth_header)
        hook = FireInsightsHook(conn_id, retry_policy=FAST)

        execution_id = hook.run_workflow(
            str(WORKFLOW), {"datapath": "s3://bucket/folder/", "note": "two words"}, spark_config="--conf a=b"
        )
        record = sim.executions[execution_id]
        assert record.workflow_id == WORKFLOW
        assert record.program_parameters == "--var datapath=s3://bucket/folder/ --var note='two words'"
        execute = [r for r in sim.requests if r.endpoint == "execute"]
        assert len(execute) == 1 and execute[0].json()["workflowId"] == WORKFLOW
        assert execute[0].json()["sparkConfig"] == "--conf a=b"
        assert execute[0].path.startswith("/fire/api/v1/")

        wait_until(lambda: hook.get_execution_status(execution_id) == "COMPLETED", 10, message="COMPLETED")
        execution = hook.get_execution(execution_id)
        assert execution["id"] == execution_id and execution["status"] == 2
        every_line = hook.get_execution_logs(execution_id, tail=None)
        assert any(line.endswith("line 9") for line in every_line)
        assert hook.get_execution_logs(execution_id, tail=3) == every_line[-3:]
        assert [e["id"] for e in hook.list_executions(WORKFLOW)] == [execution_id]
        last = hook.get_last_execution(WORKFLOW)
        assert last is not None and last["id"] == execution_id
        assert hook.get_last_execution(999) is None
        assert hook.get_execution_url(execution_id) == f"{sim.url}/#/view-workflow-result/{execution_id}"


@pytest.mark.parametrize("execute_answer", ["number", "json_number", "json_object"])
def test_execute_answer_forms(token: str, connect: Callable[..., str], execute_answer: str) -> None:
    options = {"execute_answer": execute_answer, "status_answer": "json_string"}
    with FireInsightsSimulator(token=token, **options) as sim:
        hook = FireInsightsHook(connect(sim.url, token), retry_policy=FAST)
        execution_id = hook.run_workflow(WORKFLOW)
        assert execution_id in sim.executions
        assert hook.get_execution_status(execution_id) in {"STARTING", "RUNNING", "COMPLETED"}


def test_host_without_scheme_and_port_field(
    sim: FireInsightsSimulator, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_FI_PORT", json.dumps(
        {"conn_type": "fire_insights", "host": "127.0.0.1", "port": sim.port, "password": token}
    ))
    hook = FireInsightsHook("fi_port", retry_policy=FAST)
    assert hook.get_last_execution(WORKFLOW) is None
    assert hook.get_execution_url(5) == f"http://127.0.0.1:{sim.port}/#/view-workflow-result/5"


@pytest.mark.parametrize("legacy", [False, True])
def test_stop_and_kill(token: str, connect: Callable[..., str], legacy: bool) -> None:
    with FireInsightsSimulator(token=token, legacy_get_stop_kill=legacy) as sim:
        sim.add_workflow(WORKFLOW, duration=None, starting_seconds=0.0)
        hook = FireInsightsHook(connect(sim.url, token), retry_policy=FAST)
        first, second = hook.run_workflow(WORKFLOW), hook.run_workflow(WORKFLOW)
        hook.stop_execution(first)
        hook.kill_execution(second)
        assert sim.wait_for_status(first, "STOPPED", timeout=5) == "STOPPED"
        assert sim.wait_for_status(second, "KILLED", timeout=5) == "KILLED"
        methods = [(r.endpoint, r.method) for r in sim.requests if r.endpoint in ("stop", "kill")]
        if legacy:
            assert methods == [("stop", "POST"), ("stop", "GET"), ("kill", "POST"), ("kill", "GET")]
        else:
            assert methods == [("stop", "POST"), ("kill", "POST")]


def test_unknown_execution_is_not_found(hook: FireInsightsHook, token: str) -> None:
    error = raised(FireInsightsNotFoundError, lambda: hook.get_execution_status(424242), token)
    assert "/api/v1/workflow-executions/424242/status" in str(error)
    assert error.conn_id == hook.fire_insights_conn_id


# -------------------------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("kind", "opts"),
    [("5xx", {}), ("429", {"retry_after": 0}), ("slow", {"delay": 3}), ("drop", {}), ("malformed", {})],
)
def test_transient_faults_on_reads_are_retried(
    sim: FireInsightsSimulator, token: str, connect: Callable[..., str], kind: str, opts: dict
) -> None:
    hook = FireInsightsHook(connect(sim.url, token), retry_policy=FAST, timeout=1.0)
    execution_id = hook.run_workflow(WORKFLOW)
    sim.inject_fault("status", kind, **opts)
    assert hook.get_execution_status(execution_id) in {"STARTING", "RUNNING", "COMPLETED"}
    assert sim.request_count("status") == 2


def test_retry_after_is_honoured(
    hook: FireInsightsHook, sim: FireInsightsSimulator, token: str, caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    execution_id = hook.run_workflow(WORKFLOW)
    sim.inject_fault("status", "429", retry_after=1)
    started = time.monotonic()
    hook.get_execution_status(execution_id)
    assert time.monotonic() - started >= 0.95
    printed = capfd.readouterr().out + caplog.text
    assert "HTTP 429" in printed and "attempt 1 of 4, trying again in 1.0s" in printed
    assert token not in printed
    status_times = [r.time for r in sim.requests if r.endpoint == "status"]
    assert status_times[1] - status_times[0] >= 0.95


def test_retry_after_beyond_max_delay_ends_the_retries(
    hook: FireInsightsHook, sim: FireInsightsSimulator, token: str
) -> None:
    sim.inject_fault("list", "429", retry_after=60)
    error = raised(FireInsightsApiError, lambda: hook.list_executions(WORKFLOW), token)
    assert error.status_code == 429
    assert sim.request_count("list") == 1


def test_persistent_5xx_gives_up_after_max_attempts(
    hook: FireInsightsHook, sim: FireInsightsSimulator, token: str
) -> None:
    sim.inject_fault("logs", "5xx", times=None, status=502)
    error = raised(FireInsightsApiError, lambda: hook.get_execution_logs(1), token)
    assert error.status_code == 502
    assert sim.request_count("logs") == FAST.max_attempts
    assert hook.fire_insights_conn_id in str(error)
    assert "/api/v1/workflow-executions/1/logs/view" in str(error)


def test_retry_extras_of_the_connection(
    sim: FireInsightsSimulator, token: str, connect: Callable[..., str]
) -> None:
    conn_id = connect(sim.url, token, retry_max_attempts=2, retry_initial_delay=0.01, timeout=0.5)
    sim.inject_fault("status", "5xx", times=None)
    raised(FireInsightsApiError, lambda: FireInsightsHook(conn_id).get_execution_status(1), token)
    assert sim.request_count("status") == 2
    # The constructor's policy wins over the extras.
    hook = FireInsightsHook(conn_id, retry_policy=FAST)
    raised(FireInsightsApiError, lambda: hook.get_execution_status(1), token)
    assert sim.request_count("status") == 2 + FAST.max_attempts


def test_401_is_final(hook: FireInsightsHook, sim: FireInsightsSimulator, token: str) -> None:
    sim.inject_fault("status", "401_after", after=1)
    hook.get_execution_status(hook.run_workflow(WORKFLOW))
    error = raised(FireInsightsAuthError, lambda: hook.get_execution_status(1), token)
    assert error.status_code == 401
    assert hook.fire_insights_conn_id in str(error)
    assert sim.request_count("status") == 2


def test_wrong_token_is_an_auth_error(
    sim: FireInsightsSimulator, token: str, connect: Callable[..., str]
) -> None:
    wrong = token[::-1]
    hook = FireInsightsHook(connect(sim.url, wrong), retry_policy=FAST)
    error = raised(FireInsightsAuthError, lambda: hook.run_workflow(WORKFLOW), wrong)
    assert sim.execution_count() == 0 and sim.request_count() == 1
    assert "/api/v1/workflow-executions/workflows/7" in str(error)


def test_unreachable_host(connect: Callable[..., str], token: str) -> None:
    hook = FireInsightsHook(connect(f"http://127.0.0.1:{free_port()}", token), retry_policy=FAST)
    error = raised(FireInsightsConnectionError, lambda: hook.get_execution_status(1), token)
    assert error.reason == "connect"


# ----------------------------------------------------------------------------- the ambiguous execute


@pytest.mark.parametrize(
    ("kind", "opts"),
    [
        ("execute_then_5xx", {}),  # started, then 500: adopted
        ("slow", {"delay": 3}),  # started, answer past the timeout: adopted
        ("drop", {}),  # dropped before handling: nothing started, sent again
        ("5xx", {"status": 503}),  # refused before handling: sent again after checking
        ("429", {"retry_after": 0}),  # rate limited: sent again
    ],
)
def test_execute_faults_yield_exactly_one_execution(
    sim: FireInsightsSimulator, token: str, connect: Callable[..., str], kind: str, opts: dict
) -> None:
    hook = FireInsightsHook(connect(sim.url, token), retry_policy=FAST, timeout=1.0)
    earlier = hook.run_workflow(WORKFLOW)
    sim.inject_fault("execute", kind, **opts)
    execution_id = hook.run_workflow(WORKFLOW, {"datapath": "s3://b/f/"})
    assert sim.execution_count(WORKFLOW) == 2
    assert execution_id != earlier and sim.executions[execution_id].program_parameters == "--var datapath=s3://b/f/"


def test_execute_answered_2xx_without_an_id_is_reported_not_resent(
    hook: FireInsightsHook, sim: FireInsightsSimulator, token: str
) -> None:
    # The simulator's garbled 200 starts nothing: nothing to adopt, and a 2xx is never sent again.
    sim.inject_fault("execute", "malformed")
    error = raised(FireInsightsApiError, lambda: hook.run_workflow(WORKFLOW), token)
    assert error.status_code == 200 and "no execution id" in str(error)
    assert sim.request_count("execute") == 1 and sim.execution_count() == 0


def test_execute_with_several_new_executions_is_ambiguous(
    sim: FireInsightsSimulator, token: str, connect: Callable[..., str]
) -> None:
    hook = FireInsightsHook(connect(sim.url, token), retry_policy=FAST, timeout=5.0)
    # The snapshot answer is held back while someone else starts the workflow; then our request
    # starts one too but answers 500: two executions the snapshot does not know.
    sim.inject_fault("list", "slow", delay=1.0)
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            hook.run_workflow(WORKFLOW)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = err

    worker = threading.Thread(target=run)
    worker.start()
    wait_until(lambda: sim.request_count("list") == 1, 5, message="the snapshot request")
    other = urllib.request.Request(
        f"{sim.url}/api/v1/workflow/execute", data=json.dumps({"workflowId": WORKFLOW}).encode(),
        headers={"token": token, "Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(other, timeout=5):
        pass
    sim.inject_fault("execute", "execute_then_5xx")  # before the held snapshot answer arrives
    worker.join(20)
    error = outcome.get("error")
    assert isinstance(error, FireInsightsAmbiguousExecutionError), error
    assert token not in str(error)
    assert "2 executions" in str(error)
    assert sim.execution_count(WORKFLOW) == 2
    assert sim.request_count("execute") == 2  # ours once, the other client once


# -------------------------------------------------------------------------------------- connection


def test_neither_or_both_token_sources(
    sim: FireInsightsSimulator, token: str, connect: Callable[..., str]
) -> None:
    neither = connect(sim.url)
    error = raised(FireInsightsConfigError, lambda: FireInsightsHook(neither).get_execution_status(1), token)
    assert neither in str(error) and "no token" in str(error)
    both = connect(sim.url, token, token_kms_ciphertext="AAAA")
    error = raised(FireInsightsConfigError, lambda: FireInsightsHook(both).get_execution_status(1), token)
    assert both in str(error) and "both" in str(error)


@pytest.mark.parametrize(
    "extra",
    [{"auth_header": "basic"}, {"timeout": "soon"}, {"verify": "/no/such/ca.pem"},
     {"kms_encryption_context": "[1]"}, {"retry_max_attempts": 0}],
)
def test_bad_extras(sim: FireInsightsSimulator, token: str, connect: Callable[..., str], extra: dict) -> None:
    conn_id = connect(sim.url, token, **extra)
    error = raised(FireInsightsConfigError, lambda: FireInsightsHook(conn_id).get_execution_status(1), token)
    assert conn_id in str(error)


def test_test_connection_ok_reports_expiry(hook: FireInsightsHook) -> None:
    ok, message = hook.test_connection()
    assert ok, message
    assert "accepted" in message and "expires at" in message and "(in 2d 23h)" in message


def test_test_connection_failures(
    sim: FireInsightsSimulator, token: str, connect: Callable[..., str]
) -> None:
    ok, message = FireInsightsHook(connect(sim.url, "not-the-token")).test_connection()
    assert not ok and message.startswith("Bad token")

    ok, message = FireInsightsHook(connect(f"http://127.0.0.1:{free_port()}", token)).test_connection()
    assert not ok and message.startswith("Host unreachable")

    ok, message = FireInsightsHook(connect(sim.url.replace("http://", "https://"), token)).test_connection()
    assert not ok and message.startswith("TLS failure"), message

    ok, message = FireInsightsHook(connect(sim.url)).test_connection()
    assert not ok and "no token" in message

    ok, message = FireInsightsHook(connect(sim.url, token_kms_ciphertext="!!notbase64")).test_connection()
    assert not ok and message.startswith("KMS failure")
    assert token not in message


def test_form_behaviour_matches_provider_info() -> None:
    from airflow_provider_sparkflows.get_provider_info import get_provider_info

    (entry,) = get_provider_info()["connection-types"]
    assert entry["hook-class-name"].endswith(".FireInsightsHook")
    assert entry["connection-type"] == FireInsightsHook.conn_type
    behaviour = FireInsightsHook.get_ui_field_behaviour()
    assert behaviour["hidden_fields"] == entry["ui-field-behaviour"]["hidden-fields"]
    assert behaviour["relabeling"]["password"] == "Token"
    assert isinstance(FireInsightsHook.get_connection_form_widgets(), dict)
    assert set(entry["conn-fields"]) == {
        "auth_header", "token_kms_ciphertext", "kms_encryption_context", "kms_key_id", "aws_conn_id",
        "verify", "timeout",
    }


# --------------------------------------------------------------------------------------------- async


async def test_async_calls(sim: FireInsightsSimulator, token: str, connect: Callable[..., str]) -> None:
    sim.add_workflow(8, duration=None, starting_seconds=0.0, log_lines=["a", "b", "c"])
    hook = FireInsightsHook(connect(sim.url, token, auth_header="bearer"), retry_policy=FAST, timeout=1.0)
    first, second = hook.run_workflow(8), hook.run_workflow(8)
    assert await hook.aget_execution_status(first) in {"STARTING", "RUNNING"}
    assert (await hook.aget_execution(first))["analysisFlowId"] == 8
    every_line = await hook.aget_execution_logs(first, tail=None)
    assert every_line == hook.get_execution_logs(first, tail=None) and len(every_line) >= 2
    assert await hook.aget_execution_logs(first, tail=1) == every_line[-1:]
    await hook.astop_execution(first)
    await hook.akill_execution(second)
    assert sim.wait_for_status(first, "STOPPED", timeout=5) == "STOPPED"
    assert sim.wait_for_status(second, "KILLED", timeout=5) == "KILLED"
    assert all(r.headers.get("authorization") == f"Bearer {token}" for r in sim.requests)


async def test_async_faults(sim: FireInsightsSimulator, token: str, connect: Callable[..., str]) -> None:
    hook = FireInsightsHook(connect(sim.url, token), retry_policy=FAST, timeout=1.0)
    execution_id = hook.run_workflow(WORKFLOW)
    for kind, opts in [("5xx", {}), ("429", {"retry_after": 0}), ("drop", {}), ("slow", {"delay": 3}),
                       ("malformed", {})]:
        before = sim.request_count("status")
        sim.inject_fault("status", kind, **opts)
        assert await hook.aget_execution_status(execution_id) in {"STARTING", "RUNNING", "COMPLETED"}
        assert sim.request_count("status") == before + 2, kind

    sim.inject_fault("execution", "5xx", times=None)
    error = await araised(FireInsightsApiError, hook.aget_execution(execution_id), token)
    assert sim.request_count("execution") == FAST.max_attempts and error.status_code == 503

    sim.inject_fault("logs", "401_after", after=0)
    await araised(FireInsightsAuthError, hook.aget_execution_logs(execution_id), token)
    assert sim.request_count("logs") == 1
    await araised(FireInsightsNotFoundError, hook.aget_execution_status(99999), token)


async def test_async_stop_falls_back_to_get(token: str, connect: Callable[..., str]) -> None:
    with FireInsightsSimulator(token=token, legacy_get_stop_kill=True) as sim:
        sim.add_workflow(WORKFLOW, duration=None, starting_seconds=0.0)
        hook = FireInsightsHook(connect(sim.url, token), retry_policy=FAST)
        execution_id = hook.run_workflow(WORKFLOW)
        await hook.astop_execution(execution_id)
        assert sim.wait_for_status(execution_id, "STOPPED", timeout=5) == "STOPPED"


async def test_async_unreachable(connect: Callable[..., str], token: str) -> None:
    hook = FireInsightsHook(connect(f"http://127.0.0.1:{free_port()}", token), retry_policy=FAST)
    error = await araised(FireInsightsConnectionError, hook.aget_execution_status(1), token)
    assert error.reason == "connect"


# ----------------------------------------------------------------------------------------------- KMS


def _encrypt(moto: MotoServer, token: str, context: dict[str, str] | None = None) -> tuple[str, str]:
    kms = moto.client("kms")
    key_id = kms.create_key(Description="fire insights token")["KeyMetadata"]["KeyId"]
    kwargs: dict[str, Any] = {"KeyId": key_id, "Plaintext": token.encode()}
    if context:
        kwargs["EncryptionContext"] = context
    blob = kms.encrypt(**kwargs)["CiphertextBlob"]
    return base64.b64encode(blob).decode(), key_id


@pytest.mark.parametrize("context", [None, {"purpose": "fire-insights", "env": "test"}])
def test_kms_token_sync(
    moto: MotoServer, sim: FireInsightsSimulator, token: str, connect: Callable[..., str], context: Any
) -> None:
    ciphertext, key_id = _encrypt(moto, token, context)
    extra: dict[str, Any] = {"token_kms_ciphertext": ciphertext, "kms_key_id": key_id}
    if context:
        extra["kms_encryption_context"] = json.dumps(context)
    conn_id = connect(sim.url, **extra)
    hook = FireInsightsHook(conn_id, retry_policy=FAST)
    execution_id = hook.run_workflow(WORKFLOW)
    assert sim.executions[execution_id].workflow_id == WORKFLOW
    assert all(r.headers.get("token") == token for r in sim.requests)
    ok, message = hook.test_connection()
    assert ok, message
    # The clear token is cached per process: a new hook needs no KMS, even once the key is gone.
    moto.reset()
    assert FireInsightsHook(conn_id, retry_policy=FAST).get_execution_status(execution_id)


@pytest.mark.parametrize("context", [None, {"purpose": "fire-insights"}])
async def test_kms_token_async(
    moto: MotoServer, sim: FireInsightsSimulator, token: str, connect: Callable[..., str], context: Any
) -> None:
    ciphertext, _ = _encrypt(moto, token, context)
    extra: dict[str, Any] = {"token_kms_ciphertext": ciphertext}
    if context:
        extra["kms_encryption_context"] = context  # a JSON object in the extra works as well as text
    hook = FireInsightsHook(connect(sim.url, **extra), retry_policy=FAST)
    await araised(FireInsightsNotFoundError, hook.aget_execution_status(424242), token)
    assert sim.request_count("status") == 1
    assert sim.requests[0].headers.get("token") == token


@pytest.mark.parametrize("use_async", [False, True])
async def test_kms_wrong_context(
    moto: MotoServer, sim: FireInsightsSimulator, token: str, connect: Callable[..., str], use_async: bool
) -> None:
    ciphertext, key_id = _encrypt(moto, token, {"purpose": "fire-insights"})
    conn_id = connect(sim.url, token_kms_ciphertext=ciphertext, kms_key_id=key_id,
                      kms_encryption_context={"purpose": "something-else"})
    hook = FireInsightsHook(conn_id, retry_policy=FAST)
    if use_async:
        error = await araised(FireInsightsKmsError, hook.aget_execution_status(1), token)
    else:
        error = raised(FireInsightsKmsError, lambda: hook.get_execution_status(1), token)
    assert conn_id in str(error) and "InvalidCiphertextException" in str(error)
    assert "kms_encryption_context" in str(error)
    assert sim.request_count() == 0


@pytest.mark.parametrize("use_async", [False, True])
async def test_kms_missing_key(
    moto: MotoServer, sim: FireInsightsSimulator, token: str, connect: Callable[..., str], use_async: bool
) -> None:
    ciphertext, key_id = _encrypt(moto, token)
    moto.reset()  # the key is gone
    conn_id = connect(sim.url, token_kms_ciphertext=ciphertext, kms_key_id=key_id)
    hook = FireInsightsHook(conn_id, retry_policy=FAST)
    if use_async:
        error = await araised(FireInsightsKmsError, hook.aget_execution_status(1), token)
    else:
        error = raised(FireInsightsKmsError, lambda: hook.get_execution_status(1), token)
    assert conn_id in str(error) and key_id in str(error)
    ok, message = hook.test_connection()
    assert not ok and message.startswith("KMS failure") and key_id in message


def test_errors_are_typed() -> None:
    for error_type in (FireInsightsApiError, FireInsightsAuthError, FireInsightsConnectionError,
                       FireInsightsNotFoundError, FireInsightsKmsError, FireInsightsConfigError):
        assert issubclass(error_type, FireInsightsError)
