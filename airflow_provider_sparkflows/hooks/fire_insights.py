"""Hook for the Sparkflows Fire Insights REST API (sync for workers, async for triggers)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from airflow.sdk import BaseHook

from airflow_provider_sparkflows import fire_insights_api as api
from airflow_provider_sparkflows.fire_insights_api import (
    AttemptFailure,
    Endpoint,
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

if TYPE_CHECKING:
    import ssl

    import requests
    import tenacity
    from airflow.sdk import Connection

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
"""Seconds per HTTP request when neither the hook nor the connection says otherwise."""

# Server clocks drift from the worker's; an execution whose startTime is a little before the request
# was sent may still be the one it started.
_CLOCK_SKEW_MS = 10 * 60 * 1000

# Clear tokens, per process: (conn id, digest of where the token came from) -> token. KMS Decrypt is a
# paid, rate-limited call; a worker or triggerer must not make it for every request.
_TOKEN_CACHE: dict[tuple[str, str], str] = {}
_TOKEN_CACHE_LOCK = threading.Lock()

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


@dataclass(frozen=True)
class _Settings:
    """What the hook needs from the Airflow connection, parsed once."""

    conn_id: str
    base_url: str
    auth_header: str
    verify: bool | str
    timeout: float
    retry_policy: RetryPolicy
    password: str | None
    ciphertext: str | None
    kms_encryption_context: dict[str, str] | None
    kms_key_id: str | None
    aws_conn_id: str

    @property
    def token_source_digest(self) -> str:
        source = json.dumps(
            [self.password, self.ciphertext, self.kms_encryption_context, self.kms_key_id, self.aws_conn_id],
            sort_keys=True,
        )
        return hashlib.sha256(source.encode()).hexdigest()


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer, whichever client produced it."""

    status: int
    text: str
    retry_after: str | None = None


class _TransportFailure(Exception):
    """No usable HTTP answer; ``kind`` says whether the server may have acted on the request."""

    def __init__(self, kind: AttemptFailure, reason: str, detail: str) -> None:
        self.kind = kind
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


class _Retryable(Exception):
    """A transient failure: the retry loop may send the request again after a wait."""

    def __init__(self, error: FireInsightsError, retry_after: float | None = None) -> None:
        self.error = error
        self.retry_after = retry_after
        super().__init__(str(error))


class _Ambiguous(Exception):
    """An execute request whose outcome is unknown: never simply sent again."""

    def __init__(self, error: FireInsightsError) -> None:
        self.error = error
        super().__init__(str(error))


@dataclass
class _ExecuteState:
    """Book-keeping of one ``run_workflow`` call across its attempts."""

    workflow_id: int | str
    program_parameters: str
    known_ids: set[int] | None = None
    requested_ms: int | None = None
    pending: FireInsightsError | None = None
    attempts: int = 0
    notes: list[str] = field(default_factory=list)


def _where(conn_id: str, method: str, path: str) -> dict[str, Any]:
    return {"conn_id": conn_id, "method": method, "endpoint": path}


class FireInsightsHook(BaseHook):
    """
    Talk to Sparkflows Fire Insights over its REST API.

    The connection's host is the base URL (scheme, host, port and an optional path prefix) and its
    password the access token; the token may instead be stored KMS-encrypted in the
    ``token_kms_ciphertext`` extra. Other extras: ``auth_header`` (``token``, the default, or
    ``bearer``), ``kms_encryption_context`` (JSON object), ``kms_key_id``, ``aws_conn_id`` (default
    ``aws_default``), ``verify`` (true, false or a CA bundle path), ``timeout`` (seconds),
    ``retry_max_attempts`` and ``retry_initial_delay``.

    Methods without a prefix block (``requests``) and suit workers; those prefixed with ``a`` are
    coroutines (``aiohttp``, aiobotocore for KMS) for triggers. Transient failures (connection errors,
    timeouts, 429 and 5xx answers) are retried with exponential backoff and jitter. A run request whose
    outcome is unknown is never simply sent again: the hook first looks for the execution it may have
    started.

    :param fire_insights_conn_id: The Airflow connection id of the Fire Insights server.
    :param retry_policy: How transient failures are retried; wins over the connection's extras.
    :param timeout: Seconds per HTTP request; wins over the connection's ``timeout`` extra.
    """

    conn_name_attr = "fire_insights_conn_id"
    default_conn_name = "fire_insights_default"
    conn_type = "fire_insights"
    hook_name = "Sparkflows Fire Insights"

    def __init__(
        self,
        fire_insights_conn_id: str = default_conn_name,
        retry_policy: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.fire_insights_conn_id = fire_insights_conn_id
        self.retry_policy = retry_policy
        self.timeout = timeout
        self._cached_settings: _Settings | None = None
        self._session: requests.Session | None = None
        self._ssl_context: ssl.SSLContext | bool | None = None

    # ------------------------------------------------------------------------------- connection form

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Connection form layout, the same as the provider info's ``ui-field-behaviour``."""
        behaviour = _connection_type_info()["ui-field-behaviour"]
        return {
            "hidden_fields": list(behaviour["hidden-fields"]),
            "relabeling": dict(behaviour["relabeling"]),
            "placeholders": dict(behaviour["placeholders"]),
        }

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Extra fields for the Flask AppBuilder form, from the provider info's ``conn-fields``.

        The Airflow 3 UI reads ``conn-fields`` itself; this is for UIs still built on Flask AppBuilder.
        """
        try:
            from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
            from flask_babel import lazy_gettext
            from wtforms import StringField
        except ImportError:
            return {}
        return {
            name: StringField(
                lazy_gettext(spec["label"]), widget=BS3TextFieldWidget(), description=spec["description"]
            )
            for name, spec in _connection_type_info()["conn-fields"].items()
        }

    # ------------------------------------------------------------------------------- settings, token

    def _settings(self) -> _Settings:
        if self._cached_settings is None:
            self._cached_settings = self._parse_connection(self.get_connection(self.fire_insights_conn_id))
        return self._cached_settings

    async def _asettings(self) -> _Settings:
        if self._cached_settings is None:
            conn = await self.aget_connection(self.fire_insights_conn_id)
            self._cached_settings = self._parse_connection(conn)
        return self._cached_settings

    def _parse_connection(self, conn: Connection) -> _Settings:
        conn_id = self.fire_insights_conn_id

        def bad(message: str) -> FireInsightsConfigError:
            return FireInsightsConfigError(message, conn_id=conn_id)

        extra = conn.extra_dejson or {}
        try:
            base_url = api.base_url_from_connection(conn.host, conn.port, conn.schema)
        except ValueError as err:
            raise bad(str(err)) from None

        auth_header = str(extra.get("auth_header") or "token").strip().lower()
        if auth_header not in api.AUTH_HEADER_FORMS:
            raise bad(f"extra auth_header must be 'token' or 'bearer', not {extra.get('auth_header')!r}")

        password = conn.password or None
        ciphertext = str(extra.get("token_kms_ciphertext") or "").strip() or None
        if password and ciphertext:
            raise bad("both a password and token_kms_ciphertext are set: keep one source of the token")
        if not password and not ciphertext:
            raise bad("no token: set the password to the token, or the token_kms_ciphertext extra")

        context = extra.get("kms_encryption_context")
        if isinstance(context, str):
            if context.strip():
                try:
                    context = json.loads(context)
                except ValueError:
                    raise bad("extra kms_encryption_context is not valid JSON") from None
            else:
                context = None
        if context is not None and (
            not isinstance(context, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in context.items())
        ):
            raise bad("extra kms_encryption_context must be a JSON object of strings to strings")

        verify = _parse_verify(extra.get("verify", True), bad)
        timeout = self.timeout if self.timeout is not None else _parse_number(
            extra.get("timeout"), "timeout", DEFAULT_TIMEOUT, bad
        )
        if timeout <= 0:
            raise bad(f"the timeout must be positive, not {timeout}")

        policy = self.retry_policy
        if policy is None:
            defaults = RetryPolicy()
            try:
                policy = RetryPolicy(
                    max_attempts=int(_parse_number(extra.get("retry_max_attempts"), "retry_max_attempts",
                                                   defaults.max_attempts, bad)),
                    initial_delay=_parse_number(extra.get("retry_initial_delay"), "retry_initial_delay",
                                                defaults.initial_delay, bad),
                )
            except ValueError as err:
                raise bad(f"bad retry extras: {err}") from None

        return _Settings(
            conn_id=conn_id,
            base_url=base_url,
            auth_header=auth_header,
            verify=verify,
            timeout=float(timeout),
            retry_policy=policy,
            password=password,
            ciphertext=ciphertext,
            kms_encryption_context=context or None,
            kms_key_id=str(extra["kms_key_id"]) if extra.get("kms_key_id") else None,
            aws_conn_id=str(extra.get("aws_conn_id") or "aws_default"),
        )

    def _cached_token(self, settings: _Settings) -> str | None:
        """The clear token without a KMS call: the password (masked), or a decrypted one from the cache."""
        if settings.password:
            self._mask_once(settings.password)
            return settings.password
        with _TOKEN_CACHE_LOCK:
            return _TOKEN_CACHE.get((settings.conn_id, settings.token_source_digest))

    def _remember_token(self, settings: _Settings, token: str) -> str:
        from airflow.sdk.log import mask_secret

        mask_secret(token)
        with _TOKEN_CACHE_LOCK:
            _TOKEN_CACHE[(settings.conn_id, settings.token_source_digest)] = token
        return token

    def _token(self, settings: _Settings) -> str:
        if (token := self._cached_token(settings)) is not None:
            return token
        request = self._kms_request(settings)
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        try:
            client = AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="kms").conn
            answer = client.decrypt(**request)
        except Exception as err:
            raise self._kms_error(settings, err) from None
        return self._remember_token(settings, self._kms_plaintext(settings, answer))

    async def _atoken(self, settings: _Settings) -> str:
        if (token := self._cached_token(settings)) is not None:
            return token
        request = self._kms_request(settings)
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

        try:
            aws_hook = AwsBaseHook(aws_conn_id=settings.aws_conn_id, client_type="kms")
            async with await aws_hook.get_async_conn() as client:
                answer = await client.decrypt(**request)
        except Exception as err:
            raise self._kms_error(settings, err) from None
        return self._remember_token(settings, self._kms_plaintext(settings, answer))

    _masked: set[str] = set()

    def _mask_once(self, token: str) -> None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        if digest not in FireInsightsHook._masked:
            from airflow.sdk.log import mask_secret

            mask_secret(token)
            FireInsightsHook._masked.add(digest)

    def _kms_request(self, settings: _Settings) -> dict[str, Any]:
        assert settings.ciphertext is not None
        try:
            blob = base64.b64decode(settings.ciphertext, validate=True)
        except (binascii.Error, ValueError):
            raise FireInsightsKmsError(
                "extra token_kms_ciphertext is not valid base64 (give KMS Encrypt's CiphertextBlob, base64)",
                conn_id=settings.conn_id,
            ) from None
        request: dict[str, Any] = {"CiphertextBlob": blob}
        if settings.kms_encryption_context:
            request["EncryptionContext"] = settings.kms_encryption_context
        if settings.kms_key_id:
            request["KeyId"] = settings.kms_key_id
        return request

    def _kms_plaintext(self, settings: _Settings, answer: Mapping[str, Any]) -> str:
        try:
            token = bytes(answer["Plaintext"]).decode("utf-8").strip()
        except (KeyError, TypeError, UnicodeDecodeError):
            raise FireInsightsKmsError(
                "KMS Decrypt gave no UTF-8 plaintext", conn_id=settings.conn_id
            ) from None
        if not token:
            raise FireInsightsKmsError("the KMS-decrypted token is empty", conn_id=settings.conn_id)
        return token

    def _kms_error(self, settings: _Settings, err: Exception) -> FireInsightsKmsError:
        """A clear error for a failed KMS Decrypt, naming the connection and the key (never the token)."""
        key = f"key {settings.kms_key_id!r}" if settings.kms_key_id else "the key of the ciphertext"
        response = getattr(err, "response", None)
        code = message = ""
        if isinstance(response, Mapping):
            code = str(response.get("Error", {}).get("Code", ""))
            message = str(response.get("Error", {}).get("Message", ""))
        hints = {
            "InvalidCiphertextException": (
                "the ciphertext is corrupt, or kms_encryption_context differs from the one it was "
                "encrypted with"
            ),
            "IncorrectKeyException": f"the ciphertext was not encrypted under {key}",
            "NotFoundException": f"{key} does not exist",
            "AccessDeniedException": (
                f"access to {key} is denied: the key may not exist (deleted, other account or region), "
                f"or AWS connection {settings.aws_conn_id!r} may lack kms:Decrypt"
            ),
            "DisabledException": f"{key} is disabled",
            "KMSInvalidStateException": f"{key} is not usable (disabled or pending deletion)",
            "InvalidKeyUsageException": f"{key} cannot be used to decrypt",
        }
        if code:
            detail = hints.get(code, message or "KMS refused the request")
            text = f"KMS Decrypt of token_kms_ciphertext failed ({code}): {detail}"
        else:
            text = (
                f"KMS Decrypt of token_kms_ciphertext with {key} through AWS connection "
                f"{settings.aws_conn_id!r} failed: {type(err).__name__}: {err}"
            )
        return FireInsightsKmsError(text, conn_id=settings.conn_id, endpoint="kms:Decrypt")

    # --------------------------------------------------------------------------------- HTTP, shared

    def _retry_kwargs(self, policy: RetryPolicy) -> dict[str, Any]:
        """The one retry policy of the sync and async paths, as tenacity arguments."""
        import tenacity

        def should_retry(state: tenacity.RetryCallState) -> bool:
            error = state.outcome.exception() if state.outcome is not None else None
            if not isinstance(error, _Retryable):
                return False
            return policy.allows_retry(state.attempt_number, error.retry_after)

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            retry_after = error.retry_after if isinstance(error, _Retryable) else None
            return policy.next_delay(state.attempt_number, retry_after)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            delay = state.next_action.sleep if state.next_action is not None else 0.0
            self.log.warning(
                "%s; attempt %d of %d, trying again in %.1fs",
                getattr(error, "error", error), state.attempt_number, policy.max_attempts, delay,
            )

        return {
            "retry": should_retry,
            "wait": wait,
            "stop": tenacity.stop_after_attempt(policy.max_attempts),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def _failure_error(
        self, settings: _Settings, failure: _TransportFailure, where: dict[str, Any]
    ) -> NoReturn:
        """Raise what a transport failure means for this request (shared by sync and async)."""
        messages = {
            "connect": "cannot reach the server",
            "tls": "TLS failure (check the URL's scheme and the verify extra)",
            "timeout": f"no answer within {settings.timeout:g}s",
            "dropped": "the connection was dropped before a full answer",
        }
        message = f"{messages.get(failure.reason, failure.reason)}: {failure.detail}"
        error = FireInsightsConnectionError(message, reason=failure.reason, **where)
        if where["endpoint"] == api.endpoint_path(Endpoint.EXECUTE) and api.is_ambiguous_execute_failure(
            failure=failure.kind
        ):
            raise _Ambiguous(error)
        if api.is_retryable_failure(failure=failure.kind):
            raise _Retryable(error)
        raise error

    def _answer_value(
        self,
        settings: _Settings,
        token: str,
        answer: _Answer,
        where: dict[str, Any],
        parse: Callable[[str], T],
    ) -> T:
        """Turn an HTTP answer into a value or the right error (shared by sync and async)."""
        status = answer.status
        body = api.trim_body(api.redact(answer.text, [token]))
        is_execute = where["endpoint"] == api.endpoint_path(Endpoint.EXECUTE)
        if 200 <= status < 300:
            try:
                return parse(answer.text)
            except ValueError as err:
                error = FireInsightsApiError(
                    f"the answer does not follow the contract: {api.redact(str(err), [token])}",
                    status_code=status, body=body, **where,
                )
                if is_execute:
                    raise _Ambiguous(error) from None
                # A garbled 2xx to a read is most often a proxy hiccup: worth another try.
                raise _Retryable(error) from None
        if status in (401, 403):
            raise FireInsightsAuthError(
                f"the server refused the token (HTTP {status}): {body}", status_code=status, **where
            )
        if status == 404:
            raise FireInsightsNotFoundError(f"not found (HTTP 404): {body}", **where)
        error = FireInsightsApiError(f"HTTP {status}: {body}", status_code=status, body=body, **where)
        if is_execute and api.is_ambiguous_execute_failure(status_code=status):
            raise _Ambiguous(error)
        if api.is_transient_status(status):
            raise _Retryable(error, api.retry_after_seconds(answer.retry_after))
        raise error

    def _prepare(self, settings: _Settings, token: str, method: str, path: str) -> tuple[str, dict[str, str]]:
        headers = {"Accept": "application/json, text/plain, */*"}
        headers.update(api.auth_headers(token, settings.auth_header))
        return settings.base_url + path, headers

    # ----------------------------------------------------------------------------------- HTTP, sync

    def get_conn(self) -> requests.Session:
        """The ``requests`` session of this hook (created on first use)."""
        if self._session is None:
            import requests

            self._session = requests.Session()
        return self._session

    def _send(
        self, settings: _Settings, method: str, url: str, headers: dict[str, str], json_body: Any
    ) -> _Answer:
        import requests

        try:
            response = self.get_conn().request(
                method, url, headers=headers, json=json_body, timeout=settings.timeout,
                verify=settings.verify, allow_redirects=False,
            )
            text = response.content.decode(response.encoding or "utf-8", errors="replace")
        except requests.exceptions.SSLError as err:
            raise _TransportFailure(AttemptFailure.TLS, "tls", _describe(err)) from None
        except requests.exceptions.ConnectTimeout as err:
            raise _TransportFailure(AttemptFailure.NOT_SENT, "timeout", _describe(err)) from None
        except requests.exceptions.Timeout as err:
            raise _TransportFailure(AttemptFailure.SENT_NO_ANSWER, "timeout", _describe(err)) from None
        except requests.exceptions.ConnectionError as err:
            if _request_was_sent(err):
                raise _TransportFailure(AttemptFailure.SENT_NO_ANSWER, "dropped", _describe(err)) from None
            raise _TransportFailure(AttemptFailure.NOT_SENT, "connect", _describe(err)) from None
        except requests.exceptions.RequestException as err:
            raise _TransportFailure(AttemptFailure.SENT_NO_ANSWER, "dropped", _describe(err)) from None
        return _Answer(response.status_code, text, response.headers.get("Retry-After"))

    def _attempt(
        self,
        settings: _Settings,
        token: str,
        method: str,
        path: str,
        parse: Callable[[str], T],
        json_body: Any = None,
    ) -> T:
        where = _where(settings.conn_id, method, path)
        url, headers = self._prepare(settings, token, method, path)
        try:
            answer = self._send(settings, method, url, headers, json_body)
        except _TransportFailure as failure:
            self._failure_error(settings, failure, where)
        return self._answer_value(settings, token, answer, where, parse)

    def _request(
        self,
        method: str,
        path: str,
        parse: Callable[[str], T],
        json_body: Any = None,
        policy: RetryPolicy | None = None,
    ) -> T:
        import tenacity

        settings = self._settings()
        token = self._token(settings)
        try:
            for attempt in tenacity.Retrying(**self._retry_kwargs(policy or settings.retry_policy)):
                with attempt:
                    return self._attempt(settings, token, method, path, parse, json_body)
        except _Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _request_with_get_fallback(self, path: str, parse: Callable[[str], T]) -> T:
        # Older servers serve stop and kill on GET only and answer POST with 405.
        try:
            return self._request("POST", path, parse)
        except FireInsightsApiError as err:
            if err.status_code != 405:
                raise
            self.log.info("POST %s answered 405; trying GET as older Fire Insights servers expect", path)
            return self._request("GET", path, parse)

    # ----------------------------------------------------------------------------------- HTTP, async

    def _async_ssl(self, settings: _Settings) -> ssl.SSLContext | bool:
        if self._ssl_context is None:
            if isinstance(settings.verify, str):
                import ssl

                self._ssl_context = ssl.create_default_context(cafile=settings.verify)
            else:
                # True: aiohttp's default verification; False: no verification.
                self._ssl_context = settings.verify
        return self._ssl_context

    async def _asend(
        self, settings: _Settings, method: str, url: str, headers: dict[str, str], json_body: Any
    ) -> _Answer:
        import aiohttp

        ssl_option: Any = self._async_ssl(settings)
        if ssl_option is True:
            ssl_option = None
        try:
            timeout = aiohttp.ClientTimeout(total=settings.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.request(
                    method, url, headers=headers, json=json_body, ssl=ssl_option, allow_redirects=False
                ) as response:
                    raw = await response.read()
                    text = raw.decode(response.charset or "utf-8", errors="replace")
                    return _Answer(response.status, text, response.headers.get("Retry-After"))
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as err:
            raise _TransportFailure(AttemptFailure.TLS, "tls", _describe(err)) from None
        except aiohttp.ClientConnectorError as err:
            raise _TransportFailure(AttemptFailure.NOT_SENT, "connect", _describe(err)) from None
        except asyncio.TimeoutError as err:
            raise _TransportFailure(AttemptFailure.SENT_NO_ANSWER, "timeout", _describe(err)) from None
        except aiohttp.ClientError as err:
            raise _TransportFailure(AttemptFailure.SENT_NO_ANSWER, "dropped", _describe(err)) from None

    async def _aattempt(
        self, settings: _Settings, token: str, method: str, path: str, parse: Callable[[str], T]
    ) -> T:
        where = _where(settings.conn_id, method, path)
        url, headers = self._prepare(settings, token, method, path)
        try:
            answer = await self._asend(settings, method, url, headers, None)
        except _TransportFailure as failure:
            self._failure_error(settings, failure, where)
        return self._answer_value(settings, token, answer, where, parse)

    async def _arequest(self, method: str, path: str, parse: Callable[[str], T]) -> T:
        import tenacity

        settings = await self._asettings()
        token = await self._atoken(settings)
        try:
            async for attempt in tenacity.AsyncRetrying(**self._retry_kwargs(settings.retry_policy)):
                with attempt:
                    return await self._aattempt(settings, token, method, path, parse)
        except _Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _arequest_with_get_fallback(self, path: str, parse: Callable[[str], T]) -> T:
        try:
            return await self._arequest("POST", path, parse)
        except FireInsightsApiError as err:
            if err.status_code != 405:
                raise
            self.log.info("POST %s answered 405; trying GET as older Fire Insights servers expect", path)
            return await self._arequest("GET", path, parse)

    # ---------------------------------------------------------------------------------- run workflow

    def run_workflow(
        self,
        workflow_id: int | str,
        parameters: Mapping[str, Any] | str | None = None,
        spark_config: str | None = None,
    ) -> int:
        """
        Start a workflow; return the new execution id.

        Before sending, the workflow's executions are listed. When the run request's outcome is unknown
        (read timeout, dropped connection, 5xx, a 2xx without an id) the hook lists them again: exactly
        one new execution is adopted, none means the request may be sent again, several raise
        :class:`FireInsightsAmbiguousExecutionError` rather than risk a duplicate.

        :param workflow_id: The Fire Insights workflow id.
        :param parameters: Runtime parameters: a mapping (sent as ``--var name=value``) or a ready
            ``programParameters`` string.
        :param spark_config: Passed through as ``sparkConfig``.
        """
        import tenacity

        state = _ExecuteState(workflow_id, api.format_program_parameters(parameters))
        body: dict[str, Any] = {
            "workflowId": _workflow_id_value(workflow_id),
            "programParameters": state.program_parameters,
        }
        if spark_config:
            body["sparkConfig"] = spark_config
        settings = self._settings()
        token = self._token(settings)
        try:
            for attempt in tenacity.Retrying(**self._retry_kwargs(settings.retry_policy)):
                with attempt:
                    return self._execute_attempt(settings, token, state, body)
        except _Retryable as exc:
            # The last attempt's outcome may still be unknown: look once more before giving up.
            if state.pending is not None:
                adopted = self._adopt_started_execution(settings, state)
                if adopted is not None:
                    return adopted
            raise exc.error from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _execute_attempt(
        self, settings: _Settings, token: str, state: _ExecuteState, body: dict[str, Any]
    ) -> int:
        if state.pending is not None:
            # The previous request's outcome was unknown and nothing had shown up right away; the
            # backoff gave the server time, so look again before sending anything.
            adopted = self._adopt_started_execution(settings, state)
            if adopted is not None:
                return adopted
            self.log.warning(
                "No execution of workflow %s appeared after the failed run request; sending it again",
                state.workflow_id,
            )
            state.pending = None
        if state.known_ids is None:
            state.known_ids = _execution_ids(self.list_executions(state.workflow_id))
        state.requested_ms = state.requested_ms or int(time.time() * 1000)
        state.attempts += 1
        path = api.endpoint_path(Endpoint.EXECUTE)
        try:
            return self._attempt(settings, token, "POST", path, api.parse_execution_id, body)
        except _Ambiguous as ambiguous:
            state.pending = ambiguous.error
            self.log.warning(
                "%s; the run request may have started an execution, looking for it before sending again",
                ambiguous.error,
            )
            adopted = self._adopt_started_execution(settings, state)
            if adopted is not None:
                return adopted
            if isinstance(ambiguous.error, FireInsightsApiError) and ambiguous.error.status_code is not None \
                    and 200 <= ambiguous.error.status_code < 300:
                # The server accepted the request: sending it again would start a second run.
                raise ambiguous.error from None
            raise _Retryable(ambiguous.error) from None

    def _adopt_started_execution(self, settings: _Settings, state: _ExecuteState) -> int | None:
        """The execution an unknown-outcome run request started, or None when there is none yet."""
        executions = self.list_executions(state.workflow_id)
        not_before = state.requested_ms - _CLOCK_SKEW_MS if state.requested_ms is not None else None
        new = api.find_new_executions(
            executions, state.known_ids or set(), not_before, program_parameters=state.program_parameters
        )
        if len(new) == 1:
            execution_id = int(new[0]["id"])
            self.log.warning(
                "Adopted execution %s of workflow %s: it started after a run request whose answer was lost",
                execution_id, state.workflow_id,
            )
            return execution_id
        if len(new) > 1:
            ids = sorted(int(e["id"]) for e in new)
            pending = state.pending
            raise FireInsightsAmbiguousExecutionError(
                f"the outcome of the run request for workflow {state.workflow_id} is unknown and "
                f"{len(new)} executions started since it was sent ({', '.join(map(str, ids))}); not "
                "sending it again, check them in Fire Insights"
                + (f" (last error: {pending.detail})" if pending is not None else ""),
                status_code=getattr(pending, "status_code", None),
                **_where(settings.conn_id, "POST", api.endpoint_path(Endpoint.EXECUTE)),
            )
        state.known_ids = _execution_ids(executions)
        return None

    # ------------------------------------------------------------------------------- sync API calls

    def get_execution_status(self, execution_id: int | str) -> str:
        """
        The execution's status name, e.g. ``RUNNING`` or ``COMPLETED`` (see ``fire_insights_api``).

        :param execution_id: The execution id.
        """
        return self._request(
            "GET", api.endpoint_path(Endpoint.STATUS, execution_id=execution_id), api.parse_status
        )

    def get_execution(self, execution_id: int | str) -> dict[str, Any]:
        """
        The execution object (``id``, ``analysisFlowId``, ``status`` code, ``startTime``, ...).

        :param execution_id: The execution id.
        """
        return self._request(
            "GET", api.endpoint_path(Endpoint.EXECUTION, execution_id=execution_id), _parse_object
        )

    def stop_execution(self, execution_id: int | str) -> None:
        """
        Ask the server to stop the execution (it goes STOPPING, then STOPPED).

        :param execution_id: The execution id.
        """
        self._request_with_get_fallback(api.endpoint_path(Endpoint.STOP, execution_id=execution_id), _ignore)

    def kill_execution(self, execution_id: int | str) -> None:
        """
        Kill the execution (it ends KILLED).

        :param execution_id: The execution id.
        """
        self._request_with_get_fallback(api.endpoint_path(Endpoint.KILL, execution_id=execution_id), _ignore)

    def get_execution_logs(self, execution_id: int | str, tail: int | None = 50) -> list[str]:
        """
        The execution's log lines.

        :param execution_id: The execution id.
        :param tail: Keep only this many last lines; None keeps all.
        """
        text = self._request("GET", api.endpoint_path(Endpoint.LOGS, execution_id=execution_id), _text)
        return api.tail_lines(text, tail)

    def list_executions(self, workflow_id: int | str) -> list[dict[str, Any]]:
        """
        The workflow's executions, as the server lists them.

        :param workflow_id: The workflow id.
        """
        return self._request("GET", api.endpoint_path(Endpoint.LIST, workflow_id=workflow_id), _parse_list)

    def get_last_execution(self, workflow_id: int | str) -> dict[str, Any] | None:
        """
        The workflow's latest execution, or None when it has none.

        :param workflow_id: The workflow id.
        """
        return self._request(
            "GET", api.endpoint_path(Endpoint.LAST, workflow_id=workflow_id), _parse_optional_object
        )

    def get_execution_url(self, execution_id: int | str) -> str:
        """
        The execution's page in the Fire Insights UI (no request is made; the token is not needed).

        :param execution_id: The execution id.
        """
        return api.execution_ui_url(self._settings().base_url, execution_id)

    def test_connection(self) -> tuple[bool, str]:
        """
        Make one cheap authenticated call and say what failed: the connection set-up, KMS, the host,
        TLS or the token. When the token is a JWT with ``exp``, say when it expires.

        The call asks for the last execution of workflow 0, which the contract answers with an empty
        body when there is none; any answer but 401/403 proves the server took the token.
        """
        try:
            settings = self._settings()
            token = self._token(settings)
        except FireInsightsKmsError as err:
            return False, f"KMS failure: {err}"
        except FireInsightsError as err:
            return False, f"Connection set-up error: {err}"
        expiry = _expiry_note(token)
        try:
            path = api.endpoint_path(Endpoint.LAST, workflow_id=0)
            self._request("GET", path, _ignore, policy=RetryPolicy(max_attempts=1))
        except FireInsightsAuthError as err:
            return False, f"Bad token: {err}" + (f"; {expiry}" if expiry else "")
        except FireInsightsNotFoundError:
            pass  # the token got through; only the workflow is unknown
        except FireInsightsConnectionError as err:
            kind = {"tls": "TLS failure", "connect": "Host unreachable", "timeout": "No answer"}.get(
                err.reason, "Connection failure"
            )
            return False, f"{kind}: {err}"
        except FireInsightsError as err:
            return False, f"The server answered an error: {err}"
        message = f"Connected to {settings.base_url}; the token was accepted"
        return True, message + (f"; {expiry}" if expiry else "")

    # ------------------------------------------------------------------------------ async API calls

    async def aget_execution_status(self, execution_id: int | str) -> str:
        """
        Async :meth:`get_execution_status`, for triggers.

        :param execution_id: The execution id.
        """
        return await self._arequest(
            "GET", api.endpoint_path(Endpoint.STATUS, execution_id=execution_id), api.parse_status
        )

    async def aget_execution(self, execution_id: int | str) -> dict[str, Any]:
        """
        Async :meth:`get_execution`, for triggers.

        :param execution_id: The execution id.
        """
        return await self._arequest(
            "GET", api.endpoint_path(Endpoint.EXECUTION, execution_id=execution_id), _parse_object
        )

    async def astop_execution(self, execution_id: int | str) -> None:
        """
        Async :meth:`stop_execution`, for triggers.

        :param execution_id: The execution id.
        """
        path = api.endpoint_path(Endpoint.STOP, execution_id=execution_id)
        await self._arequest_with_get_fallback(path, _ignore)

    async def akill_execution(self, execution_id: int | str) -> None:
        """
        Async :meth:`kill_execution`, for triggers.

        :param execution_id: The execution id.
        """
        path = api.endpoint_path(Endpoint.KILL, execution_id=execution_id)
        await self._arequest_with_get_fallback(path, _ignore)

    async def aget_execution_logs(self, execution_id: int | str, tail: int | None = 50) -> list[str]:
        """
        Async :meth:`get_execution_logs`, for triggers.

        :param execution_id: The execution id.
        :param tail: Keep only this many last lines; None keeps all.
        """
        text = await self._arequest("GET", api.endpoint_path(Endpoint.LOGS, execution_id=execution_id), _text)
        return api.tail_lines(text, tail)


# ------------------------------------------------------------------------------------------ helpers


def _connection_type_info() -> dict[str, Any]:
    from airflow_provider_sparkflows.get_provider_info import get_provider_info

    for entry in get_provider_info()["connection-types"]:
        if entry["connection-type"] == FireInsightsHook.conn_type:
            return entry
    raise LookupError("the provider info declares no fire_insights connection type")


def _parse_verify(value: Any, bad: Callable[[str], FireInsightsConfigError]) -> bool | str:
    if value is None or isinstance(value, bool):
        return True if value is None else value
    text = str(value).strip()
    if text.lower() in _TRUE or not text:
        return True
    if text.lower() in _FALSE:
        return False
    if not os.path.exists(text):
        raise bad(f"extra verify must be true, false or the path of a CA bundle; {text!r} does not exist")
    return text


def _parse_number(
    value: Any, name: str, default: float, bad: Callable[[str], FireInsightsConfigError]
) -> float:
    if value is None or value == "":
        return float(default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise bad(f"extra {name} must be a number, not {value!r}") from None


def _workflow_id_value(workflow_id: int | str) -> int | str:
    # The contract types workflowId as a number; a numeric string is sent as one.
    if isinstance(workflow_id, str) and workflow_id.strip().isdigit():
        return int(workflow_id.strip())
    return workflow_id


def _execution_ids(executions: list[dict[str, Any]]) -> set[int]:
    ids = set()
    for execution in executions:
        try:
            ids.add(int(execution["id"]))
        except (KeyError, TypeError, ValueError):
            continue
    return ids


def _text(body: str) -> str:
    return body


def _ignore(body: str) -> None:
    return None


def _parse_object(body: str) -> dict[str, Any]:
    value = api.parse_json(body)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {api.trim_body(body, 200)!r}")
    return value


def _parse_optional_object(body: str) -> dict[str, Any] | None:
    value = api.parse_json(body)
    if value is None or value == {}:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object or an empty body, got {api.trim_body(body, 200)!r}")
    return value


def _parse_list(body: str) -> list[dict[str, Any]]:
    value = api.parse_json(body)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(f"expected a JSON array of executions, got {api.trim_body(body, 200)!r}")
    return value


def _describe(err: BaseException) -> str:
    # Exception texts of requests/aiohttp name the URL, never request headers, so the token stays out.
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {api.trim_body(text, 300)}"


def _request_was_sent(err: BaseException) -> bool:
    """Whether a ``requests`` connection error happened after the request went out.

    ``requests`` wraps a refused or unresolvable connection in ``MaxRetryError(NewConnectionError)``,
    and a connection dropped mid-exchange in ``ProtocolError``. Anything unrecognised counts as sent,
    the safe side for a run request.
    """
    from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

    cause: Any = err.args[0] if err.args else None
    if isinstance(cause, MaxRetryError):
        cause = cause.reason
    if isinstance(cause, NewConnectionError):
        return False
    if isinstance(cause, ProtocolError):
        return True
    return True


def _expiry_note(token: str) -> str:
    expires = api.token_expiry(token)
    if expires is None:
        return ""
    left = expires - datetime.now(timezone.utc)
    when = expires.strftime("%Y-%m-%d %H:%M:%S UTC")
    if left.total_seconds() <= 0:
        return f"the token expired at {when}"
    days, seconds = divmod(int(left.total_seconds()), 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes = seconds // 60
    span = f"{days}d {hours}h" if days else f"{hours}h {minutes}m"
    return f"the token expires at {when} (in {span})"
