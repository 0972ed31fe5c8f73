"""FireInsightsWorkflowOperator through dag.test() on a real Airflow, against the Fire Insights simulator."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_sparkflows.testing.simulator import FireInsightsSimulator
from tests.conftest import AIRFLOW_HOME, ROOT, wait_until

DAG_FILE = ROOT / "tests" / "dags" / "fire_insights_operator.py"
CONN_ID = "fire_insights_test"


def _load_dags() -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("fire_insights_operator_dags", DAG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {name: getattr(module, f"dag_{name}") for name in module.VARIANTS}


DAGS = _load_dags()


@pytest.fixture
def token() -> str:
    # Unique per test so that finding it anywhere is proof of a leak, not a coincidence.
    return f"secret-token-{uuid.uuid4().hex}"


@pytest.fixture
def simulator(token: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FireInsightsSimulator]:
    with FireInsightsSimulator(token=token) as sim:
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{CONN_ID.upper()}",
            json.dumps({"conn_type": "fire_insights", "host": sim.url, "password": token}),
        )
        yield sim


def run_dag(name: str, **conf: Any) -> tuple[str, dict[str, Any]]:
    """Run one of the test DAGs with dag.test(); return the task's state and its XComs."""
    from airflow.models import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag = DAGS[name]
    dr = dag.test(run_conf=conf or None)
    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).one()
        xcoms = {
            x.key: x.value
            for x in session.query(XComModel).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).all()
        }
    return str(ti.state), xcoms


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_success_returns_execution_and_link(mode: str, simulator: FireInsightsSimulator) -> None:
    simulator.add_workflow(7, duration=0.6, outcome="COMPLETED")
    state, xcoms = run_dag(mode, workflow_id=7, datapath="s3://bucket/raw/day one/")

    assert state == "success"
    assert simulator.execution_count() == 1
    (execution,) = simulator.executions.values()
    assert execution.workflow_id == 7
    # The server splits the parameter string like a shell: the folder with a space stays one value.
    assert shlex.split(execution.program_parameters) == ["--var", "datapath=s3://bucket/raw/day one/"]
    url = f"{simulator.url}/#/view-workflow-result/{execution.id}"
    assert xcoms["return_value"] == {"execution_id": execution.id, "status": "COMPLETED", "url": url}
    assert xcoms["execution_id"] == execution.id
    assert xcoms["execution_url"] == url


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_failed_execution_fails_task_with_log_tail(
    mode: str, simulator: FireInsightsSimulator, capfd: pytest.CaptureFixture[str]
) -> None:
    simulator.add_workflow(8, duration=0.4, outcome="FAILED")
    state, _ = run_dag(mode, workflow_id=8)

    assert state == "failed"
    out = capfd.readouterr()
    text = out.out + out.err
    (execution,) = simulator.executions.values()
    assert f"Fire Insights execution {execution.id} of workflow 8 ended FAILED" in text
    assert "Last lines of the execution log" in text


@pytest.mark.parametrize("mode", ["sync_timeout", "deferrable_timeout"])
def test_timeout_stops_execution(mode: str, simulator: FireInsightsSimulator) -> None:
    simulator.add_workflow(9, duration=60, outcome="COMPLETED")
    state, _ = run_dag(mode, workflow_id=9)

    assert state == "failed"
    (execution,) = simulator.executions.values()
    assert simulator.wait_for_status(execution.id, "STOPPED", timeout=10)


def test_execution_timeout_kills_task_and_stops_execution(simulator: FireInsightsSimulator) -> None:
    simulator.add_workflow(10, duration=60, outcome="COMPLETED")
    state, _ = run_dag("sync_execution_timeout", workflow_id=10)

    assert state == "failed"
    (execution,) = simulator.executions.values()
    assert simulator.wait_for_status(execution.id, "STOPPED", timeout=10)


def test_no_wait_returns_once_started(simulator: FireInsightsSimulator) -> None:
    simulator.add_workflow(11, duration=60, outcome="COMPLETED")
    state, xcoms = run_dag("no_wait", workflow_id=11)

    assert state == "success"
    assert xcoms["return_value"]["status"] in {"STARTING", "RUNNING"}


async def test_trigger_on_kill_stops_execution(simulator: FireInsightsSimulator) -> None:
    from airflow_provider_sparkflows.hooks.fire_insights import FireInsightsHook
    from airflow_provider_sparkflows.triggers.fire_insights import FireInsightsWorkflowTrigger

    simulator.add_workflow(12, duration=60, outcome="COMPLETED")
    execution_id = FireInsightsHook(CONN_ID).run_workflow(12)
    trigger = FireInsightsWorkflowTrigger(execution_id=execution_id, fire_insights_conn_id=CONN_ID)

    await trigger.on_kill()

    assert simulator.wait_for_status(execution_id, "STOPPED", timeout=10)


@pytest.mark.parametrize("mode", ["sync_retry", "deferrable_retry"])
def test_retry_after_failed_try_reattaches_to_running_execution(
    mode: str, simulator: FireInsightsSimulator, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A try that dies while its execution runs is followed by a try that reattaches to it."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "fire_insights", "host": simulator.url, "password": token,
                    "extra": {"retry_max_attempts": 1}}),
    )
    simulator.add_workflow(13, duration=3, outcome="COMPLETED")
    # The first status poll fails for good, so the first try dies with its execution still running.
    simulator.inject_fault("status", "5xx", times=1)

    state, xcoms = run_dag(mode, workflow_id=13)

    assert state == "success"
    assert simulator.execution_count() == 1, simulator.executions
    (execution,) = simulator.executions.values()
    assert xcoms["return_value"]["execution_id"] == execution.id
    assert not execution.stop_requested


def test_timeout_keeps_running_across_a_reattaching_retry(
    simulator: FireInsightsSimulator, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retry reattaches but does not restart the clock: the execution is stopped ~4 s after start."""
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "fire_insights", "host": simulator.url, "password": token,
                    "extra": {"retry_max_attempts": 1}}),
    )
    simulator.add_workflow(16, duration=60, outcome="COMPLETED")
    # The first try dies after ~2.5 s of polling (a 401 is final), its execution still running.
    simulator.inject_fault("status", "401_after", after=12)

    state, _ = run_dag("sync_retry_timeout", workflow_id=16)

    assert state == "failed"
    (execution,) = simulator.executions.values()
    assert simulator.request_count("execute") == 1
    assert execution.stop_requested_at is not None
    # A restarted clock would stop it no earlier than 2.5 + 4 s after it started.
    assert execution.stop_requested_at - execution.created < 5.5


def test_retry_after_sigkilled_worker_reattaches(simulator: FireInsightsSimulator) -> None:
    """A worker SIGKILLed mid-run; the next try (scheduled as the scheduler would) reattaches."""
    from airflow.models import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    simulator.add_workflow(15, duration=4, outcome="COMPLETED")
    when = datetime.datetime(2024, 3, 1, tzinfo=datetime.timezone.utc)
    script = (
        "import datetime, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('d', {str(DAG_FILE)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"when = datetime.datetime.fromisoformat({when.isoformat()!r})\n"
        "m.dag_sync.test(logical_date=when, run_after=when, run_conf={'workflow_id': 15})\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        wait_until(lambda: any(e.status == "RUNNING" for e in simulator.executions.values()),
                   timeout=90, message="the first try's execution to run")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()

    dag = DAGS["sync"]
    with create_session() as session:
        dag_run = session.query(DagRun).filter_by(dag_id=dag.dag_id, logical_date=when).one()
        ti = dag_run.get_task_instance("run_workflow", session=session)
        assert ti is not None and ti.state == TaskInstanceState.RUNNING
        # What the scheduler does once the dead worker's heartbeat times out and a retry is due.
        ti.try_number += 1
        ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        _run_task(ti=ti, task=dag.task_dict["run_workflow"])
        session.expire_all()
        ti = dag_run.get_task_instance("run_workflow", session=session)
        assert ti is not None
        state, try_number = ti.state, ti.try_number

    assert state == TaskInstanceState.SUCCESS
    assert try_number == 2
    assert simulator.execution_count() == 1, simulator.executions


@pytest.mark.parametrize("mode", ["sync", "deferrable"])
def test_token_never_leaks(
    mode: str, simulator: FireInsightsSimulator, token: str, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.trigger import Trigger
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    simulator.add_workflow(14, duration=0.3, outcome="FAILED")
    run_dag(mode, workflow_id=14)

    out = capfd.readouterr()
    assert token not in out.out + out.err
    for log_file in Path(AIRFLOW_HOME, "logs").rglob("*"):
        if log_file.is_file():
            assert token not in log_file.read_text(errors="replace"), log_file
    with create_session() as session:
        stored = [str(x.value) for x in session.query(XComModel).all()]
        stored += [json.dumps(r.rendered_fields) for r in session.query(RenderedTaskInstanceFields).all()]
        stored += [str(t.kwargs) + str(t.encrypted_kwargs) for t in session.query(Trigger).all()]
    assert not [s for s in stored if token in s]
