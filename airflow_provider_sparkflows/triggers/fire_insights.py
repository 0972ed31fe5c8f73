"""Trigger that watches a Fire Insights workflow execution from the triggerer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_sparkflows.fire_insights_api import is_known_status, is_terminal


class FireInsightsWorkflowTrigger(BaseTrigger):
    """
    Poll a Fire Insights execution until it ends, without blocking the triggerer's event loop.

    Yields exactly one event whose payload is JSON-safe: ``{"event": "finished" | "timeout" | "error",
    "execution_id", "status", "message"}``. The operator's ``execute_complete`` decides success or
    failure from ``status``, exactly as in sync mode, so both modes share one outcome.

    :param execution_id: The Fire Insights execution to watch.
    :param fire_insights_conn_id: The Airflow connection holding the Fire Insights URL and token.
        Only the id is serialized; the token is read (and KMS-decrypted) inside the triggerer.
    :param poll_interval: Seconds between status requests.
    :param end_time: Epoch seconds after which a ``timeout`` event is yielded; ``None`` waits forever.
    """

    def __init__(
        self,
        execution_id: int,
        fire_insights_conn_id: str,
        poll_interval: float = 10.0,
        end_time: float | None = None,
    ) -> None:
        super().__init__()
        self.execution_id = execution_id
        self.fire_insights_conn_id = fire_insights_conn_id
        self.poll_interval = poll_interval
        self.end_time = end_time

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "execution_id": self.execution_id,
                "fire_insights_conn_id": self.fire_insights_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
            },
        )

    def _hook(self) -> Any:
        # Imported here so that deserializing the trigger stays cheap; the hook pulls in aiohttp lazily.
        from airflow_provider_sparkflows.hooks.fire_insights import FireInsightsHook

        return FireInsightsHook(fire_insights_conn_id=self.fire_insights_conn_id)

    def _event(self, event: str, status: str | None, message: str) -> TriggerEvent:
        return TriggerEvent(
            {"event": event, "execution_id": self.execution_id, "status": status, "message": message}
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        status: str | None = None
        unknown_logged: set[str] = set()
        try:
            while True:
                status = await hook.aget_execution_status(self.execution_id)
                if is_terminal(status):
                    yield self._event("finished", status, f"execution {self.execution_id} ended {status}")
                    return
                if not is_known_status(status) and status not in unknown_logged:
                    unknown_logged.add(status)
                    self.log.warning(
                        "Execution %s reports status %s, which this provider does not know; "
                        "treating it as active.", self.execution_id, status,
                    )
                if self.end_time is not None and time.time() >= self.end_time:
                    yield self._event(
                        "timeout", status,
                        f"execution {self.execution_id} still {status} when the operator's timeout expired",
                    )
                    return
                self.log.info("Execution %s is %s; next check in %ss", self.execution_id, status,
                              self.poll_interval)
                await asyncio.sleep(self.poll_interval)
        except Exception as err:
            # The hook's errors name the connection and endpoint, never the token.
            yield self._event("error", status, f"{type(err).__name__}: {err}")

    async def on_kill(self) -> None:
        """Stop the remote execution when a user kills the deferred task (Airflow 3.3+)."""
        hook = self._hook()
        status = await hook.aget_execution_status(self.execution_id)
        if not is_terminal(status):
            self.log.info("Task killed: stopping Fire Insights execution %s (%s)", self.execution_id, status)
            await hook.astop_execution(self.execution_id)
