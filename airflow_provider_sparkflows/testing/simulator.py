"""A local Fire Insights server for tests and demos, in the spirit of moto for AWS.

:class:`FireInsightsSimulator` is a real HTTP server on loopback that speaks the REST contract of
``/work/shared/fire-insights-api.md`` (both token forms, execute, status, execution object, logs,
listing, last execution, stop and kill). Workflows have a configurable duration and outcome; an
execution's status is computed lazily from its timestamps (STARTING -> RUNNING -> final status), so no
background thread drives it. Faults can be injected per endpoint, every API request is recorded, and a
small admin API under ``/_sim/`` lets another process drive a simulator it did not start.

It imports nothing but the standard library, so it runs anywhere the provider is installed::

    export FIRE_INSIGHTS_SIMULATOR_TOKEN=T   # or --token T
    python -m airflow_provider_sparkflows.testing.simulator --port 8765 --workflow 7:2:COMPLETED

or, in Python::

    with FireInsightsSimulator(token="T") as sim:
        sim.add_workflow(7, duration=0.5, outcome="FAILED")
        ...  # point the client at sim.url
        assert sim.execution_count(7) == 1
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "ACTIVE_STATUSES",
    "ENDPOINTS",
    "FAULT_KINDS",
    "STATUS_CODES",
    "TERMINAL_STATUSES",
    "ExecutionRecord",
    "Fault",
    "FireInsightsSimulator",
    "RecordedRequest",
    "Workflow",
    "decode_jwt_payload",
    "make_jwt",
    "main",
]

#: Status names and their integer codes, as in the contract's Swagger table.
STATUS_CODES: dict[str, int] = {
    "RUNNING": 0,
    "STOPPED": 1,
    "COMPLETED": 2,
    "FAILED": 3,
    "STARTING": 4,
    "STOP": 5,
    "KILLED": 6,
    "STOPPING": 7,
    "TIMEOUT": 8,
    "PENDING": 9,
    "SKIPPED": 10,
}
TERMINAL_STATUSES = frozenset({"STOPPED", "COMPLETED", "FAILED", "KILLED", "TIMEOUT", "SKIPPED"})
ACTIVE_STATUSES = frozenset(STATUS_CODES) - TERMINAL_STATUSES

#: Endpoint names used by fault injection and request records.
ENDPOINTS = ("execute", "status", "execution", "logs", "list", "last", "stop", "kill")
FAULT_KINDS = ("5xx", "429", "slow", "drop", "malformed", "401_after", "execute_then_5xx")
_FAULT_OPTIONS: dict[str, frozenset[str]] = {
    "5xx": frozenset({"status", "body"}),
    "429": frozenset({"retry_after", "body"}),
    "slow": frozenset({"delay"}),
    "drop": frozenset(),
    "malformed": frozenset({"body"}),
    "401_after": frozenset({"after"}),
    "execute_then_5xx": frozenset({"status", "body"}),
}
EXECUTE_ANSWERS = ("number", "json_number", "json_object")
STATUS_ANSWERS = ("text", "json_string")
AUTH_HEADERS = ("any", "token", "bearer")

_INVALID_TOKEN = {"error": "invalid_token", "error_description": "Invalid access token"}
_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
_MALFORMED_BODY = b'<html><body>{"id": 1\xff\xfe truncated'
DEFAULT_JWT_SECRET = "fire-insights-simulator-secret"


# --------------------------------------------------------------------------------------------- tokens


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(sub: str = "demo", expires_in_seconds: float = 3600, secret: str = DEFAULT_JWT_SECRET) -> str:
    """Return an HS512 JWT shaped like a Fire Insights token.

    :param sub: the token's subject (the Fire Insights user name).
    :param expires_in_seconds: lifetime from now; negative gives an already expired token.
    :param secret: the HMAC key used to sign it.

    ``iat`` and ``exp`` are in epoch **milliseconds**, as Fire Insights writes them.
    """
    now_ms = int(time.time() * 1000)
    header = {"alg": "HS512", "typ": "JWT"}
    payload = {"sub": sub, "iat": now_ms, "exp": now_ms + int(expires_in_seconds * 1000)}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(payload, separators=(",", ":")).encode())
    )
    signature = hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha512).digest()
    return signing_input + "." + _b64url(signature)


def decode_jwt_payload(token: str) -> dict[str, Any] | None:
    """Return a JWT's payload without verifying its signature, or ``None`` if ``token`` is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        raw = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


# ------------------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the simulator received it (admin ``/_sim/`` requests are not recorded).

    :param method: HTTP method.
    :param path: the raw request path, with base path and query string.
    :param endpoint: the endpoint name (one of :data:`ENDPOINTS`), or ``None`` for an unknown path.
    :param headers: request headers, names lower-cased (the last value wins for repeated names).
    :param body: request body decoded as UTF-8 (undecodable bytes replaced).
    :param time: epoch seconds when the request arrived.
    """

    method: str
    path: str
    endpoint: str | None
    headers: dict[str, str]
    body: str
    time: float

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class Workflow:
    """How the simulator runs a workflow's executions.

    :param workflow_id: the Fire Insights workflow id.
    :param duration: seconds spent RUNNING; ``math.inf`` (or ``None`` when added) never ends by itself.
    :param outcome: the final status once ``duration`` has passed (a terminal status name).
    :param starting_seconds: seconds spent STARTING before RUNNING.
    :param log_lines: lines the workflow writes to its log while running.
    :param failure_message: the error named in the last log line of a FAILED or TIMEOUT execution.
    :param stopping_seconds: seconds spent STOPPING after a stop request, before STOPPED.
    :param name: the workflow's name, shown in execution objects.
    """

    workflow_id: int
    duration: float = 1.0
    outcome: str = "COMPLETED"
    starting_seconds: float = 0.2
    log_lines: tuple[str, ...] = ()
    failure_message: str = ""
    stopping_seconds: float = 0.2
    name: str = ""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["duration"] = None if math.isinf(self.duration) else self.duration
        data["log_lines"] = list(self.log_lines)
        return data


@dataclass
class ExecutionRecord:
    """The simulator's own record of an execution, including what the REST API does not show.

    The status is computed from the timestamps each time it is read, so a record never goes stale.
    Times are epoch seconds on the simulator's clock.
    """

    execution_id: int
    workflow_id: int
    program_parameters: str
    body: dict[str, Any]
    created: float
    workflow: Workflow
    stop_requested_at: float | None = None
    kill_requested_at: float | None = None
    _clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    @property
    def id(self) -> int:
        """Alias of :attr:`execution_id`."""
        return self.execution_id

    @property
    def stop_requested(self) -> bool:
        return self.stop_requested_at is not None

    @property
    def kill_requested(self) -> bool:
        return self.kill_requested_at is not None

    @property
    def status(self) -> str:
        """The status name now."""
        return self.status_at(self._clock())

    @property
    def status_code(self) -> int:
        return STATUS_CODES[self.status]

    @property
    def running_at(self) -> float:
        """When the execution leaves STARTING."""
        return self.created + self.workflow.starting_seconds

    def status_at(self, now: float) -> str:
        """The status name at epoch second ``now``."""
        if self.kill_requested_at is not None and now >= self.kill_requested_at:
            return "KILLED"
        if self.stop_requested_at is not None and now >= self.stop_requested_at:
            stopped_at = self.stop_requested_at + self.workflow.stopping_seconds
            return "STOPPED" if now >= stopped_at else "STOPPING"
        if now < self.running_at:
            return "STARTING"
        if now < self.running_at + self.workflow.duration:
            return "RUNNING"
        return self.workflow.outcome

    def ended_at(self, now: float) -> float | None:
        """When the execution reached its terminal status, or ``None`` while it is active at ``now``."""
        if self.status_at(now) not in TERMINAL_STATUSES:
            return None
        if self.kill_requested_at is not None:
            return self.kill_requested_at
        if self.stop_requested_at is not None:
            return self.stop_requested_at + self.workflow.stopping_seconds
        return self.running_at + self.workflow.duration

    def log_text(self, now: float) -> str:
        """The execution's log at ``now``: it grows as the execution moves on."""
        status = self.status_at(now)
        ident = f"execution {self.execution_id} of workflow {self.workflow_id}"
        lines = [
            _log_line(self.created, "INFO", f"Submitted {ident}"),
            _log_line(self.created, "INFO", f"Program parameters: {self.program_parameters}"),
        ]
        if status == "STARTING":
            return "\n".join(lines) + "\n"
        lines.append(_log_line(self.running_at, "INFO", f"Spark application started for {ident}"))
        lines += [_log_line(self.running_at, "INFO", line) for line in self.workflow.log_lines]
        if self.stop_requested_at is not None and self.kill_requested_at is None:
            lines.append(_log_line(self.stop_requested_at, "INFO", f"Stop requested for {ident}"))
        ended = self.ended_at(now)
        if ended is None:
            return "\n".join(lines) + "\n"
        final = f"Workflow execution {self.execution_id} {status}"
        if status == "FAILED":
            message = self.workflow.failure_message or f"simulated failure of workflow {self.workflow_id}"
            lines.append(_log_line(ended, "ERROR", f"{final}: {message}"))
        elif status == "TIMEOUT":
            message = self.workflow.failure_message or "execution exceeded its time limit"
            lines.append(_log_line(ended, "ERROR", f"{final}: {message}"))
        else:
            lines.append(_log_line(ended, "WARN" if status == "KILLED" else "INFO", final))
        return "\n".join(lines) + "\n"

    def to_json(self, now: float) -> dict[str, Any]:
        """The simulator's view of the record, as served by ``GET /_sim/executions``."""
        status = self.status_at(now)
        return {
            "id": self.execution_id,
            "workflow_id": self.workflow_id,
            "program_parameters": self.program_parameters,
            "status": status,
            "status_code": STATUS_CODES[status],
            "created": self.created,
            "stop_requested": self.stop_requested,
            "kill_requested": self.kill_requested,
            "stop_requested_at": self.stop_requested_at,
            "kill_requested_at": self.kill_requested_at,
            "body": self.body,
        }


def _log_line(epoch: float, level: str, message: str) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}"
    return f"{stamp} {level:<5} {message}"


@dataclass
class Fault:
    """A fault waiting to be served by one endpoint (see :meth:`FireInsightsSimulator.inject_fault`)."""

    endpoint: str
    kind: str
    times: int | None = 1
    status: int | None = None
    retry_after: int | float | str = 1
    delay: float = 5.0
    body: str | bytes | None = None
    after: int = 0


@dataclass
class _Response:
    """What the HTTP handler writes back."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False


def _json_response(status: int, payload: Any, **headers: str) -> _Response:
    return _Response(status, json.dumps(payload).encode(), "application/json", dict(headers))


def _text_response(status: int, text: str) -> _Response:
    return _Response(status, text.encode(), "text/plain; charset=utf-8")


def _not_found(message: str) -> _Response:
    return _json_response(404, {"error": "not_found", "message": message})


def _as_bytes(body: str | bytes) -> bytes:
    return body.encode() if isinstance(body, str) else body


# ------------------------------------------------------------------------------------------- routing

_ROUTES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), name)
    for pattern, name in (
        (r"/api/v1/workflow/execute", "execute"),
        (r"/api/v1/workflow-executions/(\d+)/status", "status"),
        (r"/api/v1/workflowExecution/(\d+)", "execution"),
        (r"/api/v1/workflow-executions/(\d+)/logs/view", "logs"),
        (r"/api/v1/workflow-executions/workflows/(\d+)", "list"),
        (r"/api/v1/last/workflow-execution/(\d+)", "last"),
        (r"/api/v1/workflow-execution/(\d+)/stop", "stop"),
        (r"/api/v1/workflow-execution/(\d+)/kill", "kill"),
    )
)


def _route(path: str) -> tuple[str, int | None] | None:
    """Return (endpoint name, id in the path) for an API path relative to the base path."""
    for pattern, name in _ROUTES:
        match = pattern.fullmatch(path)
        if match:
            return name, int(match.group(1)) if match.groups() else None
    return None


# ----------------------------------------------------------------------------------------- simulator


class FireInsightsSimulator:
    """A Fire Insights REST server on loopback, following the project's contract page.

    :param token: the only access token accepted (a JWT from :func:`make_jwt` or any string). A JWT
        whose ``exp`` (epoch ms) has passed is rejected like a wrong token.
    :param auth_header: where the token is accepted: ``"token"`` (header ``token: <value>``),
        ``"bearer"`` (``Authorization: Bearer <value>``) or ``"any"`` (both).
    :param host: interface to listen on.
    :param port: port to listen on; 0 picks a free one (read it back from :attr:`port`).
    :param base_path: a path prefix in front of every API path, e.g. ``"/fire"``; part of :attr:`url`.
    :param execute_answer: how the execute call answers the new id: ``"number"`` (bare ``162`` as
        text/plain, as documented), ``"json_number"`` (``162`` as application/json) or
        ``"json_object"`` (``{"id": 162}``).
    :param status_answer: ``"text"`` (``RUNNING`` as text/plain) or ``"json_string"`` (``"RUNNING"``).
    :param legacy_get_stop_kill: serve stop and kill on GET only and answer POST with 405, like the
        older docs.
    :param expose_program_parameters: add ``programParameters`` to execution objects (the documented
        server does not show it).
    :param auto_create_workflows: run unknown workflow ids with the default duration and outcome
        instead of answering 404.
    :param default_duration: RUNNING seconds of auto-created workflows.
    :param default_outcome: final status of auto-created workflows.
    :param first_execution_id: the id given to the first execution.
    :param clock: epoch-seconds clock driving the lifecycle; replace it to control time in tests.

    All state sits behind one lock; the attributes of the answer switches may be changed at any time.
    """

    def __init__(
        self,
        token: str,
        auth_header: str = "any",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        base_path: str = "",
        execute_answer: str = "number",
        status_answer: str = "text",
        legacy_get_stop_kill: bool = False,
        expose_program_parameters: bool = False,
        auto_create_workflows: bool = True,
        default_duration: float = 1.0,
        default_outcome: str = "COMPLETED",
        first_execution_id: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not token:
            raise ValueError("token must not be empty")
        _check_choice("auth_header", auth_header, AUTH_HEADERS)
        _check_choice("execute_answer", execute_answer, EXECUTE_ANSWERS)
        _check_choice("status_answer", status_answer, STATUS_ANSWERS)
        _check_choice("default_outcome", default_outcome, TERMINAL_STATUSES)
        self.token = token
        self.auth_header = auth_header
        self.host = host
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.execute_answer = execute_answer
        self.status_answer = status_answer
        self.legacy_get_stop_kill = legacy_get_stop_kill
        self.expose_program_parameters = expose_program_parameters
        self.auto_create_workflows = auto_create_workflows
        self.default_duration = default_duration
        self.default_outcome = default_outcome
        self.clock = clock
        self._requested_port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._next_id = first_execution_id
        self._workflows: dict[int, Workflow] = {}
        self._executions: dict[int, ExecutionRecord] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._server: _Server | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------- lifecycle

    def start(self) -> FireInsightsSimulator:
        """Start serving in a background thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("the simulator is already running")
        self._stopping.clear()
        self._server = _Server((self.host, self._requested_port), self)
        self._port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"fire-insights-simulator-{self.port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection (slow answers still pending are abandoned)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FireInsightsSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The port actually listened on (still known after :meth:`stop`, to test a server gone away)."""
        if self._port is None:
            raise RuntimeError("the simulator has not been started")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the API, including :attr:`base_path`, e.g. ``http://127.0.0.1:8765/fire``."""
        return f"http://{self.host}:{self.port}{self.base_path}"

    @property
    def admin_url(self) -> str:
        """Base URL of the admin API (``/_sim``), which needs no token."""
        return f"http://{self.host}:{self.port}/_sim"

    # ------------------------------------------------------------------------------- configuration

    def add_workflow(
        self,
        workflow_id: int | str,
        duration: float | None = 1.0,
        outcome: str = "COMPLETED",
        starting_seconds: float = 0.2,
        log_lines: Collection[str] | None = None,
        *,
        failure_message: str = "",
        stopping_seconds: float = 0.2,
        name: str = "",
    ) -> Workflow:
        """Define (or redefine) how a workflow runs; see :class:`Workflow`. ``duration=None`` never ends.

        Executions already started keep the definition they started with.
        """
        _check_choice("outcome", outcome, TERMINAL_STATUSES)
        workflow = Workflow(
            workflow_id=int(workflow_id),
            duration=math.inf if duration is None else float(duration),
            outcome=outcome,
            starting_seconds=float(starting_seconds),
            log_lines=tuple(log_lines or ()),
            failure_message=failure_message,
            stopping_seconds=float(stopping_seconds),
            name=name or f"Workflow {workflow_id}",
        )
        with self._lock:
            self._workflows[workflow.workflow_id] = workflow
        return workflow

    @property
    def workflows(self) -> dict[int, Workflow]:
        """A snapshot of the defined workflows by id."""
        with self._lock:
            return dict(self._workflows)

    def inject_fault(self, endpoint: str, kind: str, times: int | None = 1, **opts: Any) -> Fault:
        """Make the next ``times`` calls of ``endpoint`` misbehave (``times=None``: every call).

        :param endpoint: one of :data:`ENDPOINTS`, or ``"*"`` for every API endpoint.
        :param kind: one of

            - ``"5xx"``: answer ``status`` (default 503) with ``body``;
            - ``"429"``: answer 429 with a ``Retry-After: <retry_after>`` header (default 1 s);
            - ``"slow"``: handle the call, then hold the answer ``delay`` seconds (default 5) so a
              client timeout trips; an execute call therefore still starts its execution;
            - ``"drop"``: close the connection without an answer, before handling the call;
            - ``"malformed"``: answer 200 with a garbage ``body``;
            - ``"401_after"``: after ``after`` successful calls (default 0), answer 401;
            - ``"execute_then_5xx"``: execute only: start the execution, then answer ``status``
              (default 500), the ambiguous case.

        Faults are served in the order they were injected; authentication is checked first.
        """
        if endpoint != "*":
            _check_choice("endpoint", endpoint, ENDPOINTS)
        _check_choice("kind", kind, FAULT_KINDS)
        if kind == "execute_then_5xx" and endpoint != "execute":
            raise ValueError("fault kind 'execute_then_5xx' only applies to the 'execute' endpoint")
        unknown = set(opts) - _FAULT_OPTIONS[kind]
        if unknown:
            raise ValueError(f"unknown option(s) {sorted(unknown)} for fault kind {kind!r}; "
                             f"allowed: {sorted(_FAULT_OPTIONS[kind])}")
        if times is not None and times < 1:
            raise ValueError("times must be a positive number of calls, or None for every call")
        fault = Fault(endpoint=endpoint, kind=kind, times=times, **opts)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        """Forget every pending fault."""
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The faults still pending."""
        with self._lock:
            return list(self._faults)

    def reset(self) -> None:
        """Forget workflows, executions, requests and faults. Execution ids keep counting up."""
        with self._lock:
            self._workflows.clear()
            self._executions.clear()
            self._requests.clear()
            self._faults.clear()

    # -------------------------------------------------------------------------------- inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every API request received, oldest first."""
        with self._lock:
            return list(self._requests)

    def request_count(self, endpoint: str | None = None) -> int:
        """Number of API requests received, for one endpoint or all."""
        with self._lock:
            return sum(1 for r in self._requests if endpoint is None or r.endpoint == endpoint)

    @property
    def executions(self) -> dict[int, ExecutionRecord]:
        """A snapshot of the executions by id (the records themselves are live)."""
        with self._lock:
            return dict(self._executions)

    def execution_count(self, workflow_id: int | str | None = None) -> int:
        """Number of executions started, for one workflow or all."""
        with self._lock:
            wanted = None if workflow_id is None else int(workflow_id)
            return sum(1 for e in self._executions.values() if wanted is None or e.workflow_id == wanted)

    def status(self, execution_id: int) -> str:
        """The status name of an execution now."""
        with self._lock:
            return self._get_execution(execution_id).status_at(self.clock())

    def wait_for_status(
        self, execution_id: int, status: str | Collection[str], timeout: float = 10.0
    ) -> str:
        """Wait until an execution has ``status`` (a name or a collection of names); return it.

        :raises TimeoutError: naming the execution and its last status once ``timeout`` seconds pass.
        """
        wanted = {status} if isinstance(status, str) else set(status)
        deadline = time.monotonic() + timeout
        while True:
            current = self.status(execution_id)
            if current in wanted:
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"execution {execution_id} still {current} after {timeout}s, waiting for {sorted(wanted)}"
                )
            time.sleep(0.01)

    def _get_execution(self, execution_id: int) -> ExecutionRecord:
        try:
            return self._executions[execution_id]
        except KeyError:
            raise KeyError(f"no execution {execution_id} in the simulator") from None

    # ------------------------------------------------------------------------------ HTTP handling

    def _handle_request(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> _Response:
        """Answer one HTTP request (called by the server's handler threads)."""
        path = urlsplit(raw_path).path
        if path.startswith("/_sim/") or path.startswith(f"{self.base_path}/_sim/"):
            return self._handle_admin(method, path[path.index("/_sim/") + len("/_sim/"):], body)
        relative = path[len(self.base_path):] if path.startswith(self.base_path) else None
        routed = _route(relative) if relative is not None else None
        text = body.decode("utf-8", errors="replace")
        with self._lock:
            self._requests.append(RecordedRequest(
                method=method, path=raw_path, endpoint=routed[0] if routed else None,
                headers={k.lower(): v for k, v in headers.items()}, body=text, time=self.clock(),
            ))
            if routed is None:
                return _not_found(f"no API endpoint at {path}")
            endpoint, ident = routed
            allowed = self._allowed_method(endpoint)
            if method != allowed:
                payload = {"error": "method_not_allowed", "allowed": allowed}
                return _Response(405, json.dumps(payload).encode(), headers={"Allow": allowed})
            if not self._authorized(headers):
                return _json_response(401, _INVALID_TOKEN, **_CHALLENGE)
            fault = self._take_fault(endpoint)
            if fault is not None and fault.kind != "slow":
                return self._fault_response(fault, text)
            response = self._serve(endpoint, ident, text)
            self._count_success(endpoint)
        if fault is not None:
            response.delay = fault.delay
        return response

    def _allowed_method(self, endpoint: str) -> str:
        if endpoint in ("stop", "kill"):
            return "GET" if self.legacy_get_stop_kill else "POST"
        return "POST" if endpoint == "execute" else "GET"

    def _authorized(self, headers: dict[str, str]) -> bool:
        lowered = {k.lower(): v for k, v in headers.items()}
        presented: list[str] = []
        if self.auth_header in ("any", "token") and "token" in lowered:
            presented.append(lowered["token"].strip())
        if self.auth_header in ("any", "bearer"):
            scheme, _, value = lowered.get("authorization", "").strip().partition(" ")
            if scheme.lower() == "bearer":
                presented.append(value.strip())
        if not any(hmac.compare_digest(p.encode(), self.token.encode()) for p in presented):
            return False
        payload = decode_jwt_payload(self.token)
        exp = payload.get("exp") if payload else None
        return not (isinstance(exp, (int, float)) and exp < self.clock() * 1000)

    def _take_fault(self, endpoint: str) -> Fault | None:
        """Pop the first fault that fires for this call (lock held)."""
        for fault in self._faults:
            if fault.endpoint not in (endpoint, "*"):
                continue
            if fault.kind == "401_after" and fault.after > 0:
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
            return fault
        return None

    def _count_success(self, endpoint: str) -> None:
        for fault in self._faults:
            if fault.kind == "401_after" and fault.endpoint in (endpoint, "*") and fault.after > 0:
                fault.after -= 1

    def _fault_response(self, fault: Fault, body: str) -> _Response:
        if fault.kind == "5xx":
            return _Response(fault.status or 503, _as_bytes(fault.body or '{"error":"service_unavailable"}'))
        if fault.kind == "429":
            return _Response(429, _as_bytes(fault.body or '{"error":"too_many_requests"}'),
                             headers={"Retry-After": str(fault.retry_after)})
        if fault.kind == "drop":
            return _Response(0, drop=True)
        if fault.kind == "malformed":
            return _Response(200, _as_bytes(fault.body if fault.body is not None else _MALFORMED_BODY))
        if fault.kind == "401_after":
            return _json_response(401, _INVALID_TOKEN)
        # execute_then_5xx: the execution starts, the client hears only an error.
        self._execute(body)
        return _Response(fault.status or 500, _as_bytes(fault.body or '{"error":"internal_server_error"}'))

    def _serve(self, endpoint: str, ident: int | None, body: str) -> _Response:
        """Answer an authorized, fault-free API call (lock held)."""
        assert ident is not None or endpoint == "execute"
        if endpoint == "execute":
            return self._execute(body)
        if endpoint in ("list", "last"):
            return self._serve_workflow_query(endpoint, int(ident or 0))
        record = self._executions.get(int(ident or 0))
        if record is None:
            return _not_found(f"Workflow execution {ident} not found")
        now = self.clock()
        if endpoint == "status":
            name = record.status_at(now)
            if self.status_answer == "json_string":
                return _json_response(200, name)
            return _text_response(200, name)
        if endpoint == "execution":
            return _json_response(200, self._execution_object(record, now))
        if endpoint == "logs":
            return _text_response(200, record.log_text(now))
        status = record.status_at(now)
        if endpoint == "stop":
            if status in TERMINAL_STATUSES:
                message = f"Workflow execution {record.execution_id} already ended with status {status}"
            else:
                if record.stop_requested_at is None:
                    record.stop_requested_at = now
                message = f"Stop requested for workflow execution {record.execution_id}"
            return _json_response(200, {"status": "ok", "message": message})
        # kill
        if status in TERMINAL_STATUSES:
            message = f"Workflow execution {record.execution_id} already ended with status {status}"
            return _text_response(200, message)
        record.kill_requested_at = now
        return _text_response(200, f"Workflow execution {record.execution_id} killed")

    def _execute(self, body: str) -> _Response:
        """Start an execution from an execute request body (lock held)."""
        try:
            payload = json.loads(body or "null")
        except ValueError:
            return _json_response(400, {"error": "bad_request", "message": "the body is not JSON"})
        if not isinstance(payload, dict) or "workflowId" not in payload:
            return _json_response(400, {"error": "bad_request", "message": "workflowId is required"})
        try:
            workflow_id = int(str(payload["workflowId"]).strip())
        except ValueError:
            return _json_response(400, {"error": "bad_request",
                                        "message": f"workflowId {payload['workflowId']!r} is not a number"})
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            if not self.auto_create_workflows:
                return _not_found(f"Workflow {workflow_id} not found")
            workflow = Workflow(workflow_id, self.default_duration, self.default_outcome,
                                name=f"Workflow {workflow_id}")
            self._workflows[workflow_id] = workflow
        parameters = payload.get("programParameters")
        record = ExecutionRecord(
            execution_id=self._next_id,
            workflow_id=workflow_id,
            program_parameters=parameters if isinstance(parameters, str) else "",
            body=payload,
            created=self.clock(),
            workflow=workflow,
            _clock=self.clock,
        )
        self._next_id += 1
        self._executions[record.execution_id] = record
        if self.execute_answer == "json_object":
            return _json_response(200, {"id": record.execution_id})
        if self.execute_answer == "json_number":
            return _json_response(200, record.execution_id)
        return _text_response(200, str(record.execution_id))

    def _serve_workflow_query(self, endpoint: str, workflow_id: int) -> _Response:
        if workflow_id not in self._workflows and not self.auto_create_workflows:
            return _not_found(f"Workflow {workflow_id} not found")
        now = self.clock()
        records = sorted(
            (e for e in self._executions.values() if e.workflow_id == workflow_id),
            key=lambda e: e.execution_id, reverse=True,
        )
        if endpoint == "list":
            return _json_response(200, [self._execution_object(e, now) for e in records])
        if not records:
            return _Response(200, b"")
        return _json_response(200, self._execution_object(records[0], now))

    def _execution_object(self, record: ExecutionRecord, now: float) -> dict[str, Any]:
        """The execution as the REST API shows it (fields of the contract page)."""
        status = record.status_at(now)
        ended = record.ended_at(now)
        application_id = f"application_{int(record.created)}_{record.execution_id:04d}"
        obj: dict[str, Any] = {
            "id": record.execution_id,
            "analysisFlowId": record.workflow_id,
            "userId": 1,
            "projectId": 1,
            "status": STATUS_CODES[status],
            "name": record.workflow.name,
            "category": "",
            "description": "",
            "logs": record.log_text(now),
            "fireJobId": f"fire-job-{record.execution_id}",
            "applicationId": "" if status == "STARTING" else application_id,
            "uiWebUrl": f"{self.url}/#/view-workflow-result/{record.execution_id}",
            "metrics": "",
            "startTime": int(record.created * 1000),
            "endTime": int(ended * 1000) if ended is not None else None,
            "emailOnSuccess": record.body.get("emailOnSuccess", ""),
            "emailOnFailure": record.body.get("emailOnFailure", ""),
        }
        if self.expose_program_parameters:
            obj["programParameters"] = record.program_parameters
        return obj

    # ---------------------------------------------------------------------------------- admin API

    def _handle_admin(self, method: str, action: str, body: bytes) -> _Response:
        """Serve ``/_sim/<action>``: the control API for a simulator in another process."""
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("the body must be a JSON object")
            if method == "GET" and action == "health":
                return _json_response(200, {"status": "ok", "url": self.url})
            if method == "GET" and action == "executions":
                with self._lock:
                    now = self.clock()
                    return _json_response(200, [e.to_json(now) for e in self._executions.values()])
            if method == "GET" and action == "requests":
                return _json_response(200, [asdict(r) for r in self.requests])
            if method == "GET" and action == "workflows":
                return _json_response(200, [w.to_json() for w in self.workflows.values()])
            if method == "POST" and action == "workflows":
                return _json_response(201, self.add_workflow(**payload).to_json())
            if method == "POST" and action == "faults":
                fault = self.inject_fault(**payload)
                described = {k: v for k, v in asdict(fault).items() if not isinstance(v, bytes)}
                return _json_response(201, described)
            if method == "POST" and action == "faults/clear":
                self.clear_faults()
                return _json_response(200, {"status": "ok"})
            if method == "POST" and action == "config":
                return _json_response(200, self._configure(payload))
            if method == "POST" and action == "reset":
                self.reset()
                return _json_response(200, {"status": "ok"})
        except (TypeError, ValueError) as err:
            return _json_response(400, {"error": "bad_request", "message": str(err)})
        return _not_found(f"no admin action {method} /_sim/{action}")

    def _configure(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Change answer switches at runtime (admin ``POST /_sim/config``)."""
        choices: dict[str, Collection[str] | None] = {
            "auth_header": AUTH_HEADERS, "execute_answer": EXECUTE_ANSWERS, "status_answer": STATUS_ANSWERS,
            "legacy_get_stop_kill": None, "expose_program_parameters": None, "auto_create_workflows": None,
        }
        unknown = set(payload) - set(choices)
        if unknown:
            raise ValueError(f"unknown setting(s) {sorted(unknown)}; allowed: {sorted(choices)}")
        for name, value in payload.items():
            allowed = choices[name]
            if allowed is None:
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be true or false")
            else:
                _check_choice(name, value, allowed)
        with self._lock:
            for name, value in payload.items():
                setattr(self, name, value)
            return {name: getattr(self, name) for name in choices}


def _check_choice(name: str, value: object, allowed: Collection[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {sorted(allowed)}, not {value!r}")


# ------------------------------------------------------------------------------------ HTTP server


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that knows its simulator and can close every open connection."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], simulator: FireInsightsSimulator) -> None:
        self.simulator = simulator
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_all(self) -> None:
        self.server_close()
        with self._connections_lock:
            connections, self._connections = self._connections, set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, asks the simulator for the answer, writes it (or drops the connection)."""

    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server behind a connection pool
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    timeout = 60  # idle keep-alive connections do not pin a thread forever

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def do_GET(self) -> None:  # noqa: N802 - the http.server naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        simulator = self.server.simulator
        response = simulator._handle_request(method, self.path, dict(self.headers.items()), body)
        if response.delay and simulator._stopping.wait(response.delay):
            response.drop = True
        if response.drop:
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except OSError:
            # The client gave up (e.g. timed out on a slow answer): nothing left to tell it.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        """Stay quiet: tests read ``simulator.requests`` instead of access logs."""


# -------------------------------------------------------------------------------------------- CLI


def _parse_workflow(spec: str) -> tuple[int, float | None, str]:
    """Parse ``ID[:DURATION[:OUTCOME]]``; DURATION ``inf`` never ends."""
    parts = spec.split(":")
    if not 1 <= len(parts) <= 3 or not parts[0].strip().isdigit():
        raise argparse.ArgumentTypeError(f"--workflow {spec!r}: expected ID[:DURATION[:OUTCOME]]")
    duration = float(parts[1]) if len(parts) > 1 and parts[1] else 1.0
    outcome = parts[2].upper() if len(parts) > 2 and parts[2] else "COMPLETED"
    if outcome not in TERMINAL_STATUSES:
        allowed = sorted(TERMINAL_STATUSES)
        raise argparse.ArgumentTypeError(f"--workflow {spec!r}: outcome must be one of {allowed}")
    return int(parts[0]), None if math.isinf(duration) else duration, outcome


TOKEN_ENV_VAR = "FIRE_INSIGHTS_SIMULATOR_TOKEN"


def _argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_sparkflows.testing.simulator",
        description="Run a local Fire Insights REST simulator until SIGTERM or Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV_VAR),
        help=f"the access token to accept (default: ${TOKEN_ENV_VAR}, which keeps it out of `ps`)",
    )
    parser.add_argument("--auth-header", choices=AUTH_HEADERS, default="any")
    parser.add_argument("--base-path", default="")
    parser.add_argument("--execute-answer", choices=EXECUTE_ANSWERS, default="number")
    parser.add_argument("--status-answer", choices=STATUS_ANSWERS, default="text")
    parser.add_argument("--legacy-get-stop-kill", action="store_true")
    parser.add_argument("--expose-program-parameters", action="store_true")
    parser.add_argument("--no-auto-create-workflows", action="store_true")
    parser.add_argument("--workflow", action="append", type=_parse_workflow, default=[],
                        metavar="ID:DURATION:OUTCOME", help="define a workflow (repeatable)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints ``Fire Insights simulator listening on <url>`` when ready."""
    parser = _argument_parser()
    args = parser.parse_args(argv)
    if not args.token:
        parser.error(f"give the token to accept with --token or ${TOKEN_ENV_VAR}")
    simulator = FireInsightsSimulator(
        token=args.token,
        auth_header=args.auth_header,
        host=args.host,
        port=args.port,
        base_path=args.base_path,
        execute_answer=args.execute_answer,
        status_answer=args.status_answer,
        legacy_get_stop_kill=args.legacy_get_stop_kill,
        expose_program_parameters=args.expose_program_parameters,
        auto_create_workflows=not args.no_auto_create_workflows,
    )
    for workflow_id, duration, outcome in args.workflow:
        simulator.add_workflow(workflow_id, duration=duration, outcome=outcome)
    done = threading.Event()

    def _request_stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    with simulator:
        print(f"Fire Insights simulator listening on {simulator.url}", flush=True)
        # A timed wait keeps the main thread responsive to signals on every platform.
        while not done.wait(0.5):
            pass
    print("Fire Insights simulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
