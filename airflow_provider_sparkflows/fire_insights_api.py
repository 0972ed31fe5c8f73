"""Pure logic of the Fire Insights REST contract, shared by the hook's sync and async paths.

Nothing here performs I/O or imports Airflow, ``requests``, ``aiohttp`` or ``boto3``: URL building,
runtime-parameter formatting, status mapping, response parsing, authentication headers, JWT expiry,
the typed errors and the retry policy. The contract is the project's ``fire-insights-api.md`` page.
"""

from __future__ import annotations

import base64
import email.utils
import json
import random
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import Enum
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = [
    "ACTIVE_STATUSES",
    "DEFAULT_SUCCESS_STATUSES",
    "STATUS_NAMES",
    "TERMINAL_STATUSES",
    "AttemptFailure",
    "Endpoint",
    "FireInsightsAmbiguousExecutionError",
    "FireInsightsApiError",
    "FireInsightsAuthError",
    "FireInsightsConfigError",
    "FireInsightsConnectionError",
    "FireInsightsError",
    "FireInsightsKmsError",
    "FireInsightsNotFoundError",
    "RetryPolicy",
    "auth_headers",
    "base_url_from_connection",
    "endpoint_path",
    "endpoint_url",
    "execution_ui_url",
    "find_new_executions",
    "format_program_parameters",
    "is_ambiguous_execute_failure",
    "is_retryable_failure",
    "is_terminal",
    "is_transient_status",
    "parse_execution_id",
    "parse_json",
    "parse_status",
    "redact",
    "retry_after_seconds",
    "status_name",
    "tail_lines",
    "token_expiry",
    "trim_body",
]

# --------------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------------


class Endpoint(str, Enum):
    """The contract's endpoints; the value is the path template below the base URL."""

    EXECUTE = "/api/v1/workflow/execute"
    STATUS = "/api/v1/workflow-executions/{execution_id}/status"
    EXECUTION = "/api/v1/workflowExecution/{execution_id}"
    LOGS = "/api/v1/workflow-executions/{execution_id}/logs/view"
    LIST = "/api/v1/workflow-executions/workflows/{workflow_id}"
    LAST = "/api/v1/last/workflow-execution/{workflow_id}"
    STOP = "/api/v1/workflow-execution/{execution_id}/stop"
    KILL = "/api/v1/workflow-execution/{execution_id}/kill"


def endpoint_path(endpoint: Endpoint, **ids: int | str) -> str:
    """
    Fill an endpoint's path template; ids are URL-quoted so a stray ``/`` cannot change the endpoint.

    :param endpoint: the endpoint.
    :param ids: ``execution_id`` or ``workflow_id`` as the template needs.
    """
    return endpoint.value.format(**{name: quote(str(value), safe="") for name, value in ids.items()})


def base_url_from_connection(host: str | None, port: int | None = None, schema: str | None = None) -> str:
    """
    Build the base URL from an Airflow connection's host, port and schema fields.

    ``host`` may be a full URL (``https://fire.example.com:8443/prefix``) or a bare host name. A bare
    host gets ``http`` (Fire Insights' own default) unless the port is 443. ``port`` is used when the
    host has none; ``schema`` (where a connection URI puts its path) is the path prefix when the host has
    none. The result has no trailing slash.

    :param host: the connection's host field.
    :param port: the connection's port field.
    :param schema: the connection's schema field.
    """
    if not host or not host.strip():
        raise ValueError("the connection has no host: set it to the Fire Insights URL")
    host = host.strip()
    if "://" not in host:
        scheme = "https" if port == 443 else "http"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"the Fire Insights URL must use http or https, not {parts.scheme!r}")
    if not parts.hostname:
        raise ValueError(f"the Fire Insights URL {host!r} has no host name")
    netloc = parts.netloc
    if parts.port is None and port:
        netloc = f"{netloc}:{int(port)}"
    path = parts.path.rstrip("/")
    if not path and schema and schema.strip("/"):
        path = "/" + schema.strip("/")
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def endpoint_url(base_url: str, endpoint: Endpoint, **ids: int | str) -> str:
    """
    Full URL of an endpoint below ``base_url`` (which may carry a path prefix).

    :param base_url: the Fire Insights base URL.
    :param endpoint: the endpoint.
    :param ids: ``execution_id`` or ``workflow_id`` as the template needs.
    """
    return base_url.rstrip("/") + endpoint_path(endpoint, **ids)


def execution_ui_url(base_url: str, execution_id: int | str) -> str:
    """
    The execution's page in the Fire Insights UI.

    :param base_url: the Fire Insights base URL.
    :param execution_id: the execution id.
    """
    return f"{base_url.rstrip('/')}/#/view-workflow-result/{execution_id}"


# --------------------------------------------------------------------------------------------------
# Runtime parameters
# --------------------------------------------------------------------------------------------------

# Characters that make shlex-style splitting differ from splitting on spaces.
_NEEDS_QUOTING = frozenset(" \t\n\r\f\v'\"\\")


def _format_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_program_parameters(parameters: Mapping[str, Any] | str | None) -> str:
    """
    Turn runtime parameters into the ``programParameters`` string.

    A mapping becomes ``--var name=value`` pairs joined by spaces. A value containing whitespace, a quote
    or a backslash is quoted shell-style (``shlex.split`` gives it back as one argument); other values,
    such as ``s3://bucket/folder/``, are written as they are, like the Lambda did. ``True``/``False``
    become ``true``/``false`` and ``None`` an empty value. A string is passed through unchanged and
    ``None`` gives an empty string.

    :param parameters: mapping of parameter name to value, a ready string, or None.
    :raises ValueError: a parameter name is empty or holds whitespace, ``=``, a quote or a backslash.
    """
    if parameters is None:
        return ""
    if isinstance(parameters, str):
        return parameters
    if not isinstance(parameters, Mapping):
        raise TypeError(
            f"parameters must be a mapping, a string or None, not {type(parameters).__name__}"
        )
    items: list[str] = []
    for name, value in parameters.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"runtime parameter name {name!r} is invalid: it must be a non-empty string")
        bad = sorted({ch for ch in name if ch in _NEEDS_QUOTING or ch == "=" or ch.isspace()})
        if bad:
            raise ValueError(
                f"runtime parameter name {name!r} is invalid: it must not contain {''.join(bad)!r}"
                " (no whitespace, '=', quotes or backslashes)"
            )
        text = _format_value(value)
        if any(ch in _NEEDS_QUOTING or ch.isspace() for ch in text):
            text = shlex.quote(text)
        items.append(f"--var {name}={text}")
    return " ".join(items)


# --------------------------------------------------------------------------------------------------
# Statuses
# --------------------------------------------------------------------------------------------------

STATUS_NAMES: dict[int, str] = {
    0: "RUNNING",
    1: "STOPPED",
    2: "COMPLETED",
    3: "FAILED",
    4: "STARTING",
    5: "STOP",
    6: "KILLED",
    7: "STOPPING",
    8: "TIMEOUT",
    9: "PENDING",
    10: "SKIPPED",
}
"""Execution status code -> name, from the contract's Swagger table."""

ACTIVE_STATUSES: frozenset[str] = frozenset({"RUNNING", "STARTING", "STOP", "STOPPING", "PENDING"})
"""Statuses of an execution that has not ended."""

TERMINAL_STATUSES: frozenset[str] = frozenset(
    {"STOPPED", "COMPLETED", "FAILED", "KILLED", "TIMEOUT", "SKIPPED"}
)
"""Statuses of an execution that has ended."""

DEFAULT_SUCCESS_STATUSES: frozenset[str] = frozenset({"COMPLETED"})
"""Terminal statuses that count as success unless the user says otherwise."""


def status_name(value: int | str) -> str:
    """
    Normalise a status to its upper-case name.

    Accepts an integer code (``2``), a name in any case (``completed``), a numeric string (``"2"``) and
    the JSON-string forms of both (``'"RUNNING"'``). An unknown code gives ``UNKNOWN(<code>)``; an
    unknown name is kept, upper-cased, and is neither active nor terminal in the tables above.

    :param value: the status as the server or the user gave it.
    """
    if isinstance(value, bool):
        raise TypeError(f"a status cannot be a boolean: {value!r}")
    if isinstance(value, int):
        return STATUS_NAMES.get(value, f"UNKNOWN({value})")
    if not isinstance(value, str):
        raise TypeError(f"a status must be an int or a str, not {type(value).__name__}")
    text = value.strip()
    if text.startswith('"'):
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = text.strip('"')
        if isinstance(decoded, (str, int)) and not isinstance(decoded, bool):
            return status_name(decoded)
        text = str(decoded)
    if not text:
        raise ValueError("empty status")
    if text.lstrip("-").isdigit():
        return status_name(int(text))
    return text.upper()


def is_terminal(status: int | str) -> bool:
    """
    Whether the status is final. An unknown status is not terminal (the caller's timeout still applies).

    :param status: a status code or name in any accepted form.
    """
    return status_name(status) in TERMINAL_STATUSES


def is_known_status(status: int | str) -> bool:
    """Whether the status is in the contract's table; callers log an unknown one once and keep waiting."""
    return status_name(status) in ACTIVE_STATUSES | TERMINAL_STATUSES


# --------------------------------------------------------------------------------------------------
# Response parsing
# --------------------------------------------------------------------------------------------------


def trim_body(body: str | bytes | None, limit: int = 500) -> str:
    """
    A response body shortened for an error message.

    :param body: the body.
    :param limit: the most characters kept.
    """
    if body is None:
        return ""
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    body = body.strip()
    if len(body) <= limit:
        return body
    return body[:limit] + f"... ({len(body) - limit} more characters)"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """
    Replace every occurrence of each secret in ``text`` with ``***``.

    :param text: the text.
    :param secrets: the values to hide (None and empty values are ignored).
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_json(body: str | bytes | None) -> Any:
    """
    Parse a JSON body; an empty body gives None.

    :param body: the body.
    :raises ValueError: the body is not JSON (the message carries the trimmed body).
    """
    if body is None:
        return None
    if isinstance(body, bytes):
        body = body.decode("utf-8", errors="replace")
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError as err:
        raise ValueError(f"the response is not valid JSON: {trim_body(body, 200)!r}") from err


def _as_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and value.is_integer() and value >= 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def parse_execution_id(body: str | bytes | None) -> int:
    """
    Read the new execution id from an execute answer.

    Tolerates a bare number (``162``, the documented form), a JSON number, a JSON string of digits and a
    JSON object carrying ``id``.

    :param body: the body of the execute answer.
    :raises ValueError: no execution id in the body.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else (body or "")
    found = _as_id(text)
    if found is None:
        try:
            decoded = json.loads(text)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            decoded = decoded.get("id")
        found = _as_id(decoded)
    if found is None:
        raise ValueError(f"no execution id in the execute answer: {trim_body(text, 200)!r}")
    return found


def parse_status(body: str | bytes | None) -> str:
    """
    Read a status from the status endpoint's answer: text (``RUNNING``) or a JSON string; a JSON object
    with ``status`` and a numeric code are tolerated too.

    :param body: the body.
    :raises ValueError: the body is empty or not a status.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else (body or "")
    text = text.strip()
    if not text:
        raise ValueError("the status answer is empty")
    if text.startswith("{"):
        try:
            decoded = json.loads(text)
        except ValueError as err:
            raise ValueError(f"the status answer is not a status: {trim_body(text, 200)!r}") from err
        if not isinstance(decoded, dict) or not isinstance(decoded.get("status"), (int, str)):
            raise ValueError(f"the status answer is not a status: {trim_body(text, 200)!r}")
        return status_name(decoded["status"])
    name = status_name(text)
    if not all(ch.isalnum() or ch in "_()-" for ch in name):
        raise ValueError(f"the status answer is not a status: {trim_body(text, 200)!r}")
    return name


def tail_lines(text: str | None, n: int | None) -> list[str]:
    """
    The last ``n`` lines of ``text`` (all of them when ``n`` is None), without line endings.

    :param text: the log text.
    :param n: how many lines to keep.
    """
    if not text:
        return []
    lines = text.splitlines()
    if n is None:
        return lines
    if n <= 0:
        return []
    return lines[-n:]


def find_new_executions(
    executions: Iterable[Mapping[str, Any]],
    known_ids: Iterable[int],
    not_before_ms: int | None = None,
    program_parameters: str | None = None,
) -> list[Mapping[str, Any]]:
    """
    Executions that are not in a snapshot taken before an execute request.

    Used after an execute request whose outcome is unknown: the executions missing from the snapshot
    whose ``startTime`` (epoch ms) is not before ``not_before_ms`` may have been started by it. An
    execution without ``startTime`` is kept, as the field is not guaranteed. The contract's execution
    object has no ``programParameters``; where a server shows it anyway, an execution with other
    parameters is left out.

    :param executions: the workflow's executions listed after the request.
    :param known_ids: execution ids listed before the request.
    :param not_before_ms: earliest start time to consider, epoch milliseconds.
    :param program_parameters: the request's ``programParameters``, compared when the server shows them.
    """
    known = set(known_ids)
    found = []
    for execution in executions:
        execution_id = _as_id(execution.get("id"))
        if execution_id is None or execution_id in known:
            continue
        start = execution.get("startTime")
        if not_before_ms is not None and isinstance(start, (int, float)) and not isinstance(start, bool):
            if start < not_before_ms:
                continue
        shown = execution.get("programParameters")
        if program_parameters is not None and isinstance(shown, str) and shown != program_parameters:
            continue
        found.append(execution)
    return found


# --------------------------------------------------------------------------------------------------
# Authentication
# --------------------------------------------------------------------------------------------------

AUTH_HEADER_FORMS = ("token", "bearer")


def auth_headers(token: str, auth_header: str = "token") -> dict[str, str]:
    """
    Headers carrying the token.

    :param token: the clear token.
    :param auth_header: ``token`` (header ``token: <value>``, the default) or ``bearer``
        (``Authorization: Bearer <value>``).
    :raises ValueError: unknown ``auth_header`` (the message never holds the token).
    """
    form = (auth_header or "token").strip().lower()
    if form == "token":
        return {"token": token}
    if form == "bearer":
        return {"Authorization": f"Bearer {token}"}
    raise ValueError(f"auth_header must be 'token' or 'bearer', not {auth_header!r}")


# exp values at or above this are milliseconds (the contract's unit); below, seconds (RFC 7519).
_EXP_MS_THRESHOLD = 100_000_000_000


def token_expiry(token: str | None) -> datetime | None:
    """
    When a JWT token expires, read without verifying its signature; None when it is not a JWT or has no
    ``exp``. ``exp`` is epoch milliseconds per the contract; small values are read as seconds.

    :param token: the token.
    """
    if not token or token.count(".") != 2:
        return None
    payload = token.split(".")[1]
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        claims = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not isinstance(claims, dict):
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    seconds = exp / 1000 if exp >= _EXP_MS_THRESHOLD else exp
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


class FireInsightsError(Exception):
    """
    Base error of the provider's Fire Insights client; the message names the connection and endpoint.

    :param message: what went wrong (never holds the token).
    :param conn_id: the Airflow connection id.
    :param endpoint: the endpoint path, e.g. ``/api/v1/workflow/execute``.
    :param method: the HTTP method, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        conn_id: str | None = None,
        endpoint: str | None = None,
        method: str | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.endpoint = endpoint
        self.method = method
        self.detail = message
        where = []
        if conn_id is not None:
            where.append(f"connection {conn_id!r}")
        if endpoint is not None:
            where.append(f"{method} {endpoint}" if method else endpoint)
        prefix = f"Fire Insights ({', '.join(where)}): " if where else "Fire Insights: "
        super().__init__(prefix + message)


class FireInsightsConfigError(FireInsightsError):
    """The Airflow connection is set up wrongly (no token, both token forms, bad extra, bad URL)."""


class FireInsightsKmsError(FireInsightsError):
    """The KMS-encrypted token could not be decrypted."""


class FireInsightsAuthError(FireInsightsError):
    """
    The server refused the token (HTTP 401 or 403); final, never retried.

    :param status_code: 401 or 403.
    """

    def __init__(self, message: str, *, status_code: int, **where: Any) -> None:
        self.status_code = status_code
        super().__init__(message, **where)


class FireInsightsNotFoundError(FireInsightsError):
    """The server answered HTTP 404 (unknown execution or workflow)."""

    status_code = 404


class FireInsightsApiError(FireInsightsError):
    """
    The server answered an error status or a body that does not follow the contract.

    :param status_code: the HTTP status (None when there was no answer to speak of).
    :param body: the response body, trimmed.
    """

    def __init__(self, message: str, *, status_code: int | None = None, body: str = "", **where: Any) -> None:
        self.status_code = status_code
        self.body = trim_body(body)
        super().__init__(message, **where)


class FireInsightsAmbiguousExecutionError(FireInsightsApiError):
    """An execute request's outcome is unknown and cannot be settled without risking a second run."""


class FireInsightsConnectionError(FireInsightsError):
    """
    The server could not be reached or the exchange broke off (refused, DNS, TLS, timeout, reset).

    :param reason: ``connect``, ``tls``, ``timeout`` or ``dropped``.
    """

    def __init__(self, message: str, *, reason: str = "connect", **where: Any) -> None:
        self.reason = reason
        super().__init__(message, **where)


# --------------------------------------------------------------------------------------------------
# Retry policy
# --------------------------------------------------------------------------------------------------


class AttemptFailure(str, Enum):
    """How a request attempt failed below HTTP, as far as whether the server may have acted on it."""

    NOT_SENT = "not_sent"
    """Nothing reached the server (connection refused, DNS, connect timeout)."""
    TLS = "tls"
    """The TLS handshake failed: a set-up problem, not transient."""
    SENT_NO_ANSWER = "sent_no_answer"
    """The request was sent but no full answer came back (read timeout, dropped connection)."""


def is_transient_status(status_code: int) -> bool:
    """
    Whether an HTTP status is worth retrying: 429 and every 5xx (the contract's choice).

    :param status_code: the HTTP status.
    """
    return status_code == 429 or 500 <= status_code <= 599


def is_retryable_failure(*, status_code: int | None = None, failure: AttemptFailure | None = None) -> bool:
    """
    Whether an idempotent request may simply be sent again after this outcome.

    :param status_code: the HTTP status when the server answered.
    :param failure: the transport failure when it did not.
    """
    if failure is not None:
        return failure in (AttemptFailure.NOT_SENT, AttemptFailure.SENT_NO_ANSWER)
    return status_code is not None and is_transient_status(status_code)


def is_ambiguous_execute_failure(
    *, status_code: int | None = None, failure: AttemptFailure | None = None
) -> bool:
    """
    Whether an execute request may have started an execution although the client cannot tell.

    True for a request that was sent without an answer (read timeout, dropped connection) and for a 5xx
    answer (the server may fail after starting the run). Not for a request that was never sent, a TLS
    failure, a 429 (refused before any work) or a 4xx.

    :param status_code: the HTTP status when the server answered.
    :param failure: the transport failure when it did not.
    """
    if failure is not None:
        return failure is AttemptFailure.SENT_NO_ANSWER
    return status_code is not None and 500 <= status_code <= 599


def retry_after_seconds(header_value: str | None, now: datetime | None = None) -> float | None:
    """
    Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date; None when absent or
    unreadable. A date in the past gives 0.

    :param header_value: the header's value.
    :param now: the current time (for tests); defaults to the clock.
    """
    if header_value is None:
        return None
    text = header_value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        now = now or datetime.now(timezone.utc)
        return max(0.0, (when - now).total_seconds())
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """
    Bounded exponential backoff with jitter for transient failures.

    :param max_attempts: attempts in all, the first included (1 disables retries).
    :param initial_delay: wait after the first failed attempt, seconds.
    :param max_delay: longest wait between attempts, seconds; a ``Retry-After`` asking for more ends
        the retries instead of being cut short.
    :param multiplier: growth factor of the wait per attempt.
    :param jitter: the wait is spread randomly up to this fraction above the backoff (0 disables).
    """

    max_attempts: int = 5
    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("retry delays must not be negative")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be at least 1, not {self.multiplier}")
        if self.jitter < 0:
            raise ValueError(f"jitter must not be negative, not {self.jitter}")

    def next_delay(
        self, attempt: int, retry_after: float | None = None, *, rand: float | None = None
    ) -> float:
        """
        Seconds to wait after failed attempt number ``attempt`` (1-based).

        A ``Retry-After`` value is honoured as given (no jitter below it). Otherwise the wait is
        ``initial_delay * multiplier ** (attempt - 1)`` capped at ``max_delay``, plus up to ``jitter``
        of itself, still capped at ``max_delay``.

        :param attempt: the number of the attempt that just failed.
        :param retry_after: the server's ``Retry-After`` in seconds, if any.
        :param rand: a number in [0, 1) replacing the random draw (for tests).
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        backoff = min(self.max_delay, self.initial_delay * self.multiplier ** max(0, attempt - 1))
        draw = random.random() if rand is None else rand
        return min(self.max_delay, backoff * (1 + self.jitter * draw))

    def allows_retry(self, attempt: int, retry_after: float | None = None) -> bool:
        """
        Whether another attempt may follow failed attempt number ``attempt``.

        :param attempt: the number of the attempt that just failed (1-based).
        :param retry_after: the server's ``Retry-After`` in seconds; waiting longer than ``max_delay``
            is not done, so such an answer ends the retries.
        """
        if attempt >= self.max_attempts:
            return False
        return retry_after is None or retry_after <= self.max_delay
