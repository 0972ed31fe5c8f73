"""The pure Fire Insights contract logic, on its own (no Airflow, no network)."""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_sparkflows import fire_insights_api as api
from airflow_provider_sparkflows.fire_insights_api import (
    AttemptFailure,
    Endpoint,
    FireInsightsAmbiguousExecutionError,
    FireInsightsApiError,
    FireInsightsAuthError,
    FireInsightsError,
    RetryPolicy,
)

BASE = "https://fire.example.com:8443/prefix"


# ------------------------------------------------------------------------------------------ imports


def test_module_imports_no_airflow_and_no_http_client() -> None:
    code = (
        "import sys; import airflow_provider_sparkflows.fire_insights_api; "
        "bad = [m for m in ('airflow', 'requests', 'aiohttp', 'boto3', 'botocore', 'aiobotocore') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


# --------------------------------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    ("endpoint", "ids", "path"),
    [
        (Endpoint.EXECUTE, {}, "/api/v1/workflow/execute"),
        (Endpoint.STATUS, {"execution_id": 7}, "/api/v1/workflow-executions/7/status"),
        (Endpoint.EXECUTION, {"execution_id": 7}, "/api/v1/workflowExecution/7"),
        (Endpoint.LOGS, {"execution_id": 7}, "/api/v1/workflow-executions/7/logs/view"),
        (Endpoint.LIST, {"workflow_id": 3}, "/api/v1/workflow-executions/workflows/3"),
        (Endpoint.LAST, {"workflow_id": 3}, "/api/v1/last/workflow-execution/3"),
        (Endpoint.STOP, {"execution_id": 7}, "/api/v1/workflow-execution/7/stop"),
        (Endpoint.KILL, {"execution_id": 7}, "/api/v1/workflow-execution/7/kill"),
    ],
)
def test_endpoint_urls_keep_the_path_prefix(endpoint: Endpoint, ids: dict, path: str) -> None:
    assert api.endpoint_path(endpoint, **ids) == path
    assert api.endpoint_url(BASE, endpoint, **ids) == BASE + path
    assert api.endpoint_url(BASE + "/", endpoint, **ids) == BASE + path


def test_ids_cannot_escape_their_path_segment() -> None:
    assert api.endpoint_path(Endpoint.STATUS, execution_id="1/../2") == (
        "/api/v1/workflow-executions/1%2F..%2F2/status"
    )


@pytest.mark.parametrize(
    ("host", "port", "schema", "expected"),
    [
        ("https://fire.example.com:8443/prefix/", None, None, "https://fire.example.com:8443/prefix"),
        ("https://fire.example.com", 8443, "prefix", "https://fire.example.com:8443/prefix"),
        ("fire.example.com", 8080, None, "http://fire.example.com:8080"),
        ("fire.example.com", 443, "", "https://fire.example.com:443"),
        ("http://127.0.0.1:9000/p", 1234, "ignored", "http://127.0.0.1:9000/p"),
        (" http://h/a/b ", None, None, "http://h/a/b"),
    ],
)
def test_base_url_from_connection(host: str, port: int | None, schema: str | None, expected: str) -> None:
    assert api.base_url_from_connection(host, port, schema) == expected


@pytest.mark.parametrize("host", [None, "", "  ", "ftp://fire.example.com", "http://"])
def test_base_url_rejects_unusable_hosts(host: str | None) -> None:
    with pytest.raises(ValueError):
        api.base_url_from_connection(host)


def test_execution_ui_url() -> None:
    assert api.execution_ui_url(BASE + "/", 162) == f"{BASE}/#/view-workflow-result/162"


# --------------------------------------------------------------------------------------- parameters


def test_parameters_like_the_lambda() -> None:
    assert api.format_program_parameters({"datapath": "s3://bucket/folder/"}) == (
        "--var datapath=s3://bucket/folder/"
    )


def test_parameters_quote_values_with_spaces_and_quotes() -> None:
    text = api.format_program_parameters({"a": "x y", "b": "it's", "c": 3, "d": True, "e": None})
    assert text == "--var a='x y' --var b='it'\"'\"'s' --var c=3 --var d=true --var e="
    assert shlex.split(text) == ["--var", "a=x y", "--var", "b=it's", "--var", "c=3", "--var", "d=true",
                                 "--var", "e="]


def test_parameters_string_and_none() -> None:
    assert api.format_program_parameters("--var x=1  --var y=2") == "--var x=1  --var y=2"
    assert api.format_program_parameters(None) == ""
    assert api.format_program_parameters({}) == ""


@pytest.mark.parametrize("name", ["", "a b", "a=b", "tab\there", "q'uote", 'd"q', "back\\slash"])
def test_parameters_reject_bad_names(name: str) -> None:
    with pytest.raises(ValueError) as err:
        api.format_program_parameters({name: "v"})
    assert repr(name) in str(err.value)


def test_parameters_reject_other_types() -> None:
    with pytest.raises(TypeError):
        api.format_program_parameters(["--var", "a=b"])  # type: ignore[arg-type]


_names = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp"), blacklist_characters="='\"\\"
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: not any(ch.isspace() for ch in s))
_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30
)


@given(st.dictionaries(_names, _values, max_size=6))
def test_parameters_round_trip_through_shlex(parameters: dict[str, str]) -> None:
    text = api.format_program_parameters(parameters)
    words = shlex.split(text)
    expected: list[str] = []
    for name, value in parameters.items():
        expected += ["--var", f"{name}={value}"]
    assert words == expected


@given(st.dictionaries(_names, st.from_regex(r"[A-Za-z0-9_@%+:,./-]*", fullmatch=True), max_size=4))
def test_plain_values_are_not_quoted(parameters: dict[str, str]) -> None:
    text = api.format_program_parameters(parameters)
    assert "'" not in text
    expected = [w for n, v in parameters.items() for w in ("--var", f"{n}={v}")]
    assert (text.split(" ") if text else []) == expected


# ----------------------------------------------------------------------------------------- statuses


def test_status_tables_follow_the_contract() -> None:
    assert api.STATUS_NAMES == {
        0: "RUNNING", 1: "STOPPED", 2: "COMPLETED", 3: "FAILED", 4: "STARTING", 5: "STOP", 6: "KILLED",
        7: "STOPPING", 8: "TIMEOUT", 9: "PENDING", 10: "SKIPPED",
    }
    assert api.ACTIVE_STATUSES | api.TERMINAL_STATUSES == set(api.STATUS_NAMES.values())
    assert not api.ACTIVE_STATUSES & api.TERMINAL_STATUSES
    assert api.DEFAULT_SUCCESS_STATUSES == {"COMPLETED"}


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (2, "COMPLETED"), ("2", "COMPLETED"), ("completed", "COMPLETED"), ('"RUNNING"', "RUNNING"),
        (' "running"\n', "RUNNING"), ('"7"', "STOPPING"), ("Stop", "STOP"), (42, "UNKNOWN(42)"),
        ("42", "UNKNOWN(42)"), ("queued", "QUEUED"), (-1, "UNKNOWN(-1)"),
    ],
)
def test_status_name(value: int | str, name: str) -> None:
    assert api.status_name(value) == name


def test_status_name_rejects_empty_and_booleans() -> None:
    with pytest.raises(ValueError):
        api.status_name("  ")
    with pytest.raises(TypeError):
        api.status_name(True)


def test_is_terminal() -> None:
    assert all(api.is_terminal(code) for code in (1, 2, 3, 6, 8, 10))
    assert not any(api.is_terminal(code) for code in (0, 4, 5, 7, 9))
    assert not api.is_terminal(42)
    assert not api.is_terminal("QUEUED")
    assert api.is_terminal("killed")


# ---------------------------------------------------------------------------------------- responses


@pytest.mark.parametrize(
    "body", ["162", " 162\n", b"162", '{"id": 162}', '{"id": "162", "status": 4}', '"162"', "162.0"]
)
def test_parse_execution_id(body: str | bytes) -> None:
    assert api.parse_execution_id(body) == 162


@pytest.mark.parametrize("body", ["", "ok", "{}", '{"id": null}', "[162]", "true", "-3", '{"id": 1.5}', None])
def test_parse_execution_id_rejects(body: str | None) -> None:
    with pytest.raises(ValueError):
        api.parse_execution_id(body)


@pytest.mark.parametrize("body", ["RUNNING", '"RUNNING"', "running\n", b"RUNNING", '{"status": 0}', "0"])
def test_parse_status(body: str | bytes) -> None:
    assert api.parse_status(body) == "RUNNING"


@pytest.mark.parametrize("body", ["", "<html>oops</html>", "{", '{"x": 1}', "[1]"])
def test_parse_status_rejects(body: str) -> None:
    with pytest.raises(ValueError):
        api.parse_status(body)


def test_parse_json() -> None:
    assert api.parse_json('[{"id": 1}]') == [{"id": 1}]
    assert api.parse_json("") is None
    assert api.parse_json(b" ") is None
    with pytest.raises(ValueError, match="not valid JSON"):
        api.parse_json("<html>")


def test_tail_lines() -> None:
    text = "a\nb\r\nc\n"
    assert api.tail_lines(text, 2) == ["b", "c"]
    assert api.tail_lines(text, None) == ["a", "b", "c"]
    assert api.tail_lines(text, 0) == []
    assert api.tail_lines(text, 10) == ["a", "b", "c"]
    assert api.tail_lines("", 5) == []


def test_trim_body_and_redact() -> None:
    assert api.trim_body("x" * 600, 500).endswith("... (100 more characters)")
    assert api.trim_body(b" ok ") == "ok"
    assert api.redact("token abcdef in abcdef", ["abcdef", None, ""]) == "token *** in ***"


def test_find_new_executions() -> None:
    executions = [
        {"id": 1, "startTime": 1_000},
        {"id": 2, "startTime": 5_000},
        {"id": 3, "startTime": 900},
        {"id": 4},
        {"id": "x"},
    ]
    found = api.find_new_executions(executions, known_ids=[1], not_before_ms=1_000)
    assert [e["id"] for e in found] == [2, 4]
    assert [e["id"] for e in api.find_new_executions(executions, [1, 2, 3, 4])] == []


# ------------------------------------------------------------------------------------- auth and JWT


def test_auth_headers() -> None:
    assert api.auth_headers("T0k3n") == {"token": "T0k3n"}
    assert api.auth_headers("T0k3n", "Bearer") == {"Authorization": "Bearer T0k3n"}
    with pytest.raises(ValueError) as err:
        api.auth_headers("T0k3n", "basic")
    assert "T0k3n" not in str(err.value)


def _jwt(payload: dict) -> str:
    def enc(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'HS512'})}.{enc(payload)}.c2ln"


def test_token_expiry_reads_milliseconds_and_seconds() -> None:
    when = datetime(2031, 5, 6, 7, 8, 9, tzinfo=timezone.utc)
    assert api.token_expiry(_jwt({"sub": "a", "exp": int(when.timestamp() * 1000)})) == when
    assert api.token_expiry(_jwt({"sub": "a", "exp": int(when.timestamp())})) == when


@pytest.mark.parametrize(
    "token", [None, "", "plain-token", "a.b.c", _jwt({"sub": "a"}), _jwt({"exp": "soon"}), "a.W10.c"]
)
def test_token_expiry_none(token: str | None) -> None:
    assert api.token_expiry(token) is None


# ------------------------------------------------------------------------------------------- errors


def test_errors_name_connection_and_endpoint() -> None:
    err = FireInsightsApiError("boom", status_code=500, body="x" * 900, conn_id="fi", endpoint="/api/v1/e",
                               method="POST")
    assert str(err).startswith("Fire Insights (connection 'fi', POST /api/v1/e): boom")
    assert err.status_code == 500 and len(err.body) < 600
    assert isinstance(err, FireInsightsError)
    auth = FireInsightsAuthError("refused", status_code=401, conn_id="fi", endpoint="/x")
    assert auth.status_code == 401 and auth.conn_id == "fi" and auth.endpoint == "/x"
    assert issubclass(FireInsightsAmbiguousExecutionError, FireInsightsApiError)


# -------------------------------------------------------------------------------------- retry policy


def test_transient_statuses() -> None:
    assert api.is_transient_status(429)
    assert all(api.is_transient_status(code) for code in (500, 502, 503, 504, 599))
    assert not any(api.is_transient_status(code) for code in (200, 400, 401, 403, 404, 405, 409))


def test_retryable_and_ambiguous_failures() -> None:
    assert api.is_retryable_failure(failure=AttemptFailure.NOT_SENT)
    assert api.is_retryable_failure(failure=AttemptFailure.SENT_NO_ANSWER)
    assert not api.is_retryable_failure(failure=AttemptFailure.TLS)
    assert api.is_retryable_failure(status_code=503)
    assert not api.is_retryable_failure(status_code=401)

    assert api.is_ambiguous_execute_failure(failure=AttemptFailure.SENT_NO_ANSWER)
    assert api.is_ambiguous_execute_failure(status_code=500)
    assert not api.is_ambiguous_execute_failure(failure=AttemptFailure.NOT_SENT)
    assert not api.is_ambiguous_execute_failure(failure=AttemptFailure.TLS)
    assert not api.is_ambiguous_execute_failure(status_code=429)
    assert not api.is_ambiguous_execute_failure(status_code=400)


def test_retry_after_seconds() -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert api.retry_after_seconds("3") == 3.0
    assert api.retry_after_seconds(" 1.5 ") == 1.5
    assert api.retry_after_seconds("-4") == 0.0
    later = (now + timedelta(seconds=20)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert api.retry_after_seconds(later, now=now) == 20.0
    earlier = (now - timedelta(seconds=20)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert api.retry_after_seconds(earlier, now=now) == 0.0
    assert api.retry_after_seconds(None) is None
    assert api.retry_after_seconds("soon") is None
    assert api.retry_after_seconds("nan") is None


def test_next_delay_backs_off_with_bounded_jitter() -> None:
    policy = RetryPolicy(max_attempts=6, initial_delay=1.0, max_delay=10.0, multiplier=2.0, jitter=0.5)
    assert [policy.next_delay(n, rand=0.0) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 10.0]
    assert policy.next_delay(1, rand=0.999) == pytest.approx(1.4995)
    assert policy.next_delay(4, rand=0.999) == 10.0
    assert policy.next_delay(2, retry_after=7.0, rand=0.5) == 7.0
    assert all(1.0 <= policy.next_delay(1) <= 1.5 for _ in range(50))


def test_allows_retry() -> None:
    policy = RetryPolicy(max_attempts=3, max_delay=5.0)
    assert policy.allows_retry(1) and policy.allows_retry(2)
    assert not policy.allows_retry(3)
    assert policy.allows_retry(1, retry_after=5.0)
    assert not policy.allows_retry(1, retry_after=60.0)


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"initial_delay": -1}, {"multiplier": 0.5}, {"jitter": -0.1}]
)
def test_retry_policy_validates(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_retry_policy_is_frozen() -> None:
    policy = RetryPolicy()
    with pytest.raises(AttributeError):
        policy.max_attempts = 9  # type: ignore[misc]


def test_find_new_executions_compares_parameters_when_shown() -> None:
    executions = [
        {"id": 5, "startTime": 2_000, "programParameters": "--var a=1"},
        {"id": 6, "startTime": 2_000, "programParameters": "--var a=2"},
        {"id": 7, "startTime": 2_000},
    ]
    found = api.find_new_executions(executions, [], 1_000, program_parameters="--var a=1")
    assert [e["id"] for e in found] == [5, 7]
