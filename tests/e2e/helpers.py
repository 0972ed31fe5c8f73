"""What the end-to-end tests share: the running stack and the look-ups they make on it."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from demo.stack import LocalStack, wait_for

#: Long enough to see STARTING -> RUNNING -> COMPLETED, short enough to keep the suite quick.
WORKFLOW_SECONDS = 5.0

class E2E:
    """The stack plus the look-ups the tests share."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.airflow = stack.airflow

    def wait(self, condition: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
        """Wait on ``condition`` with a deadline; fail at once if a part of the stack has died."""
        return wait_for(condition, timeout, what, interval=interval, check=self.stack.check_processes)

    def executions_for(self, uri: str) -> list[dict[str, Any]]:
        """The simulator's executions whose parameters name ``uri`` as datapath."""
        return [e for e in self.stack.executions() if f"datapath={uri}" in e["program_parameters"]]

    def workflow_tasks(self, dag_id: str) -> list[dict[str, Any]]:
        """Every ``run_workflow`` task instance of the DAG, with its rendered parameters."""
        tis = self.airflow.get(f"/dags/{dag_id}/dagRuns/~/taskInstances?limit=500")["task_instances"]
        return [ti for ti in tis if ti["task_id"] == "run_workflow" and ti["map_index"] >= 0]

    def workflow_task_for(self, dag_id: str, uri: str) -> dict[str, Any] | None:
        """The ``run_workflow`` task instance that ran on ``uri`` (from its rendered ``parameters``)."""
        for ti in self.workflow_tasks(dag_id):
            parameters = (ti.get("rendered_fields") or {}).get("parameters")
            if isinstance(parameters, dict) and parameters.get("datapath") == uri:
                return ti
        return None

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.airflow.get(f"/dags/{dag_id}/dagRuns/{_quote(run_id)}"))

    def wait_batch_done(self, dag_id: str, uri: str, timeout: float = 120) -> tuple[dict[str, Any], dict]:
        """Wait until the DAG run that ran the workflow on ``uri`` has ended; return (task instance, run)."""

        def ended() -> tuple[dict[str, Any], dict[str, Any]] | None:
            ti = self.workflow_task_for(dag_id, uri)
            if ti is None:
                return None
            run = self.run(dag_id, ti["dag_run_id"])
            return (ti, run) if run["state"] in ("success", "failed") else None

        ti, run = self.wait(ended, timeout, f"the {dag_id} run of {uri} to end")
        # Read the task instance again: the one seen before the run ended may be an earlier state.
        return self.workflow_task_for(dag_id, uri) or ti, run

    def unique_folder(self, prefix: str, name: str) -> str:
        return f"{prefix}{name}-{time.time_ns()}/"


def _quote(value: str) -> str:
    return quote(value, safe="")
