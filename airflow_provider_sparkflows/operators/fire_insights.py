"""Operator that runs a Sparkflows Fire Insights workflow and follows it to the end."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowException, conf
from airflow.sdk import BaseOperator, ResumableJobMixin

from airflow_provider_sparkflows.fire_insights_api import (
    DEFAULT_SUCCESS_STATUSES,
    format_program_parameters,
    is_known_status,
    is_terminal,
)
from airflow_provider_sparkflows.links.fire_insights import EXECUTION_URL_XCOM_KEY, FireInsightsExecutionLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_sparkflows.hooks.fire_insights import FireInsightsHook

EXECUTION_ID_XCOM_KEY = "execution_id"
#: ``task_state_store`` key of the timeout's deadline, so that a retry reattaching to the same execution
#: does not restart the clock.
DEADLINE_STATE_KEY = "execution_deadline"


class FireInsightsWorkflowOperator(ResumableJobMixin, BaseOperator):
    """
    Run a Fire Insights workflow and, by default, wait until its execution ends.

    The execution id is pushed to XCom (``execution_id``) and the execution's page (``execution_url``,
    the "Fire Insights execution" link) as soon as the run starts. The return value is
    ``{"execution_id": ..., "status": ..., "url": ...}``.

    A retry never starts a second execution while the first is alive: the execution id is kept in the
    task's ``task_state_store``, so a try that died (worker lost, SIGKILL) is followed by a try that
    reattaches to the running execution, or returns at once if it already completed.

    .. seealso::
        For more information on how to use this operator, take a look at the README.

    :param workflow_id: The Fire Insights workflow to run. (templated)
    :param parameters: Runtime parameters, as a dict (each item becomes ``--var name=value``, quoted
        where needed) or as a ready ``--var ...`` string. (templated)
    :param spark_config: Spark configuration passed through as ``sparkConfig``. (templated)
    :param fire_insights_conn_id: The Airflow connection holding the Fire Insights URL and token.
    :param wait_for_completion: Wait for the execution to end; if false, return once it has started.
    :param poll_interval: Seconds between status checks.
    :param timeout: Seconds to wait for the execution; on expiry the execution is stopped and the task
        fails. The clock starts when the operator first waits for the execution and keeps running across
        retries that reattach to it. ``None`` waits for ever (``execution_timeout`` still applies).
    :param deferrable: Wait in the triggerer instead of a worker slot. Defaults to
        ``[operators] default_deferrable``.
    :param success_statuses: Final statuses counted as success (default ``COMPLETED`` only; add
        ``SKIPPED`` if a skipped execution is fine for you).
    :param log_tail_lines: How many of the execution log's last lines a failure message carries.
    """

    template_fields: Sequence[str] = ("workflow_id", "parameters", "spark_config")
    template_fields_renderers = {"parameters": "json"}
    operator_extra_links = (FireInsightsExecutionLink(),)
    ui_color = "#fde6c8"
    external_id_key = EXECUTION_ID_XCOM_KEY

    def __init__(
        self,
        *,
        workflow_id: int | str,
        parameters: Mapping[str, Any] | str | None = None,
        spark_config: str | None = None,
        fire_insights_conn_id: str = "fire_insights_default",
        wait_for_completion: bool = True,
        poll_interval: float = 10.0,
        timeout: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        success_statuses: Collection[str] = DEFAULT_SUCCESS_STATUSES,
        log_tail_lines: int = 20,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.workflow_id = workflow_id
        self.parameters = parameters
        self.spark_config = spark_config
        self.fire_insights_conn_id = fire_insights_conn_id
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        self.success_statuses = frozenset(s.upper() for s in success_statuses)
        self.log_tail_lines = log_tail_lines
        self.execution_id: int | None = None
        self._final_status: str | None = None

    @cached_property
    def hook(self) -> FireInsightsHook:
        from airflow_provider_sparkflows.hooks.fire_insights import FireInsightsHook

        return FireInsightsHook(fire_insights_conn_id=self.fire_insights_conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        # Check the parameters before anything reaches the server: a bad name fails the task at once.
        format_program_parameters(self.parameters)
        return self.execute_resumable(context)

    # -- ResumableJobMixin: what "submit", "status" and "wait" mean for Fire Insights ----------------

    def submit_job(self, context: Context) -> int:
        execution_id = self.hook.run_workflow(
            self.workflow_id, parameters=self.parameters, spark_config=self.spark_config
        )
        self.log.info("Started Fire Insights workflow %s as execution %s", self.workflow_id, execution_id)
        return execution_id

    def get_job_status(self, external_id: Any, context: Context) -> str:
        return self.hook.get_execution_status(int(external_id))

    def is_job_active(self, status: str) -> bool:
        return not is_terminal(status)

    def is_job_succeeded(self, status: str) -> bool:
        return status in self.success_statuses

    def poll_until_complete(self, external_id: Any, context: Context) -> dict[str, Any]:  # type: ignore[override]
        # Airflow 3.3's mixin returns this method's value as the task's result when it reattaches
        # (and calls get_job_result only after a fresh submit), so it returns the result itself.
        self._wait(int(external_id), context)
        return self.get_job_result(external_id, context)

    def _wait(self, execution_id: int, context: Context) -> None:
        # Both a fresh start and a reattached retry come through here: publish the id and link now.
        self._remember(context, execution_id)
        if not self.wait_for_completion:
            return
        end_time = self._end_time(context, execution_id)
        if self.deferrable:
            from airflow_provider_sparkflows.triggers.fire_insights import FireInsightsWorkflowTrigger

            self.defer(
                trigger=FireInsightsWorkflowTrigger(
                    execution_id=execution_id,
                    fire_insights_conn_id=self.fire_insights_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=end_time,
                ),
                method_name="execute_complete",
            )
        unknown_logged: set[str] = set()
        while True:
            status = self.hook.get_execution_status(execution_id)
            if is_terminal(status):
                self._finish(execution_id, status)
                return
            if not is_known_status(status) and status not in unknown_logged:
                unknown_logged.add(status)
                self.log.warning("Execution %s reports status %s, unknown to this provider; "
                                 "treating it as active.", execution_id, status)
            if end_time is not None and time.time() >= end_time:
                self._fail_on_timeout(execution_id, status)
            self.log.info("Execution %s is %s; next check in %ss", execution_id, status, self.poll_interval)
            time.sleep(self.poll_interval)

    def _end_time(self, context: Context, execution_id: int) -> float | None:
        """When ``timeout`` expires for this execution; kept in the state store so a retry keeps it."""
        if self.timeout is None:
            return None
        store = context.get("task_state_store")
        saved = store.get(DEADLINE_STATE_KEY) if store is not None else None
        if isinstance(saved, dict) and saved.get("execution_id") == execution_id:
            saved_end_time = saved.get("end_time")
            if isinstance(saved_end_time, (int, float)):
                return float(saved_end_time)
        end_time = time.time() + self.timeout
        if store is not None:
            store.set(DEADLINE_STATE_KEY, {"execution_id": execution_id, "end_time": end_time})
        return end_time

    def get_job_result(self, external_id: Any, context: Context) -> dict[str, Any]:
        execution_id = int(external_id)
        if self.execution_id != execution_id:  # a retry that found the execution already complete
            self._remember(context, execution_id)
        status = self._final_status or self.hook.get_execution_status(execution_id)
        url = self.hook.get_execution_url(execution_id)
        return {"execution_id": execution_id, "status": status, "url": url}

    # -- deferrable mode ---------------------------------------------------------------------------

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Turn the trigger's event into the same outcome as sync mode."""
        execution_id = int(event["execution_id"])
        self.execution_id = execution_id
        if event["event"] == "finished":
            self._finish(execution_id, event["status"])
        elif event["event"] == "timeout":
            self._fail_on_timeout(execution_id, event["status"])
        else:
            raise AirflowException(
                f"Lost track of Fire Insights execution {execution_id} "
                f"(connection {self.fire_insights_conn_id!r}): {event['message']}"
            )
        return self.get_job_result(execution_id, context)

    # -- shared outcome handling -------------------------------------------------------------------

    def _remember(self, context: Context, execution_id: int) -> None:
        self.execution_id = execution_id
        ti = context["ti"]
        ti.xcom_push(key=EXECUTION_ID_XCOM_KEY, value=execution_id)
        ti.xcom_push(key=EXECUTION_URL_XCOM_KEY, value=self.hook.get_execution_url(execution_id))

    def _finish(self, execution_id: int, status: str) -> None:
        self._final_status = status
        if status in self.success_statuses:
            self.log.info("Fire Insights execution %s ended %s", execution_id, status)
            return
        raise AirflowException(
            f"Fire Insights execution {execution_id} of workflow {self.workflow_id} ended {status}"
            f"{self._log_tail(execution_id)}"
        )

    def _fail_on_timeout(self, execution_id: int, status: str | None) -> None:
        self.log.warning("Timeout of %ss expired: stopping execution %s", self.timeout, execution_id)
        self.hook.stop_execution(execution_id)
        raise AirflowException(
            f"Fire Insights execution {execution_id} of workflow {self.workflow_id} was still {status} "
            f"after the timeout of {self.timeout}s; it has been stopped{self._log_tail(execution_id)}"
        )

    def _log_tail(self, execution_id: int) -> str:
        try:
            lines = self.hook.get_execution_logs(execution_id, tail=self.log_tail_lines)
        except Exception as err:  # the failure itself matters more than its log
            return f". (The execution log could not be read: {err})"
        if not lines:
            return ""
        return ". Last lines of the execution log:\n" + "\n".join(lines)

    def on_kill(self) -> None:
        """Stop the remote execution when the task is killed (mark failed, execution_timeout)."""
        if self.execution_id is None:
            return
        status = self.hook.get_execution_status(self.execution_id)
        if not is_terminal(status):
            self.log.info("Task killed: stopping Fire Insights execution %s (%s)", self.execution_id, status)
            self.hook.stop_execution(self.execution_id)
