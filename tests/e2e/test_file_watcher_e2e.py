"""End to end on a real local deployment: S3 marker -> SQS -> Airflow (scheduler, triggerer) -> Fire Insights.

Everything is real and on loopback: moto's S3 sends the event notifications to moto's SQS, Airflow's
scheduler, triggerer, dag-processor and api-server run ``dags/`` with the provider, and the workflow
runs in the Fire Insights simulator, whose own record is what the assertions check. Tests drive Airflow
only through its public REST API, as the UI does.
"""

from __future__ import annotations

import pytest

from demo.stack import DAILY_DAG_ID, EVENTS_DAG_ID, StackError
from tests.e2e.helpers import E2E, WORKFLOW_SECONDS

pytestmark = pytest.mark.e2e

LINK_NAME = "Fire Insights execution"


def assert_one_execution(e2e: E2E, uri: str, status: str = "COMPLETED") -> dict:
    executions = e2e.executions_for(uri)
    assert len(executions) == 1, f"expected one execution on {uri}, got {executions}"
    execution = executions[0]
    assert execution["status"] == status, execution
    assert execution["program_parameters"] == f"--var datapath={uri}"
    return execution


def assert_link_to(e2e: E2E, dag_id: str, ti: dict, execution: dict) -> None:
    links = e2e.airflow.extra_links(dag_id, ti["dag_run_id"], "run_workflow", ti["map_index"])
    expected = f"{e2e.stack.simulator_url}/#/view-workflow-result/{execution['id']}"
    assert links.get(LINK_NAME) == expected, links


def test_one_batch_through_the_scheduled_dag(e2e: E2E) -> None:
    """Today's scheduled run waits in the triggerer; the SQS event of the marker completes it."""
    cfg = e2e.stack.config
    runs = e2e.wait(lambda: [r for r in e2e.airflow.dag_runs(DAILY_DAG_ID) if r["run_type"] == "scheduled"],
                    60, f"the scheduled run of {DAILY_DAG_ID}")
    run_id, day = runs[0]["dag_run_id"], runs[0]["logical_date"][:10]

    def sensor_state() -> str | None:
        tis = e2e.airflow.task_instances(DAILY_DAG_ID, run_id)
        return next((ti["state"] for ti in tis if ti["task_id"] == "wait_for_success_file"), None)

    e2e.wait(lambda: sensor_state() == "deferred", 90, "the sensor to defer")
    # Until the scheduler has seen the deferring worker exit, a trigger event fails the task
    # (apache/airflow#67287) and the retry finds the marker in S3 instead of taking the SQS event.
    e2e.wait(lambda: e2e.stack.deferral_seen(DAILY_DAG_ID, run_id, "wait_for_success_file"), 60,
             "the scheduler to register the deferral")
    uri = e2e.stack.upload_batch(f"{cfg.daily_prefix}{day}/")

    ti, run = e2e.wait_batch_done(DAILY_DAG_ID, uri)

    assert run["dag_run_id"] == run_id and run["state"] == "success", run
    execution = assert_one_execution(e2e, uri)
    assert_link_to(e2e, DAILY_DAG_ID, ti, execution)
    batches = e2e.airflow.get(
        f"/dags/{DAILY_DAG_ID}/dagRuns/{run_id}/taskInstances/wait_for_success_file/xcomEntries/return_value"
    )["value"]
    assert [b["uri"] for b in batches] == [uri]
    assert batches[0]["message_id"], "the batch should have come from the SQS event, not the S3 check"


def test_one_batch_through_the_event_driven_dag(e2e: E2E) -> None:
    uri = e2e.stack.upload_batch(e2e.unique_folder(e2e.stack.config.events_prefix, "one"))

    ti, run = e2e.wait_batch_done(EVENTS_DAG_ID, uri)

    assert run["state"] == "success" and run["run_type"] == "asset_triggered", run
    execution = assert_one_execution(e2e, uri)
    assert_link_to(e2e, EVENTS_DAG_ID, ti, execution)


def test_three_batches_start_three_runs_of_the_event_driven_dag(e2e: E2E) -> None:
    prefix = e2e.stack.config.events_prefix
    uris = []
    for index in range(3):
        uri = e2e.stack.upload_batch(e2e.unique_folder(prefix, f"three-{index}"))
        uris.append(uri)
        # Batches that land within one scheduler loop share a run (one mapped task each); waiting for
        # this batch's run before writing the next makes each batch start its own run.
        e2e.wait(lambda uri=uri: e2e.workflow_task_for(EVENTS_DAG_ID, uri), 90, f"a run for {uri}")

    results = [e2e.wait_batch_done(EVENTS_DAG_ID, uri) for uri in uris]

    run_ids = {run["dag_run_id"] for _, run in results}
    assert len(run_ids) == 3, run_ids
    assert all(run["state"] == "success" for _, run in results), results
    executions = [assert_one_execution(e2e, uri) for uri in uris]
    assert len({e["id"] for e in executions}) == 3


def test_backfill_of_three_past_dates_runs_each_on_its_own_folder(e2e: E2E) -> None:
    """What the UI's backfill dialog does; the markers are already in S3, so no run waits for SQS."""
    cfg = e2e.stack.config
    days = ["2025-01-01", "2025-01-02", "2025-01-03"]
    uris = [e2e.stack.upload_batch(f"{cfg.daily_prefix}{day}/") for day in days]

    backfill = e2e.airflow.create_backfill(DAILY_DAG_ID, "2025-01-01T00:00:00Z", "2025-01-03T00:00:00Z")

    def backfill_runs() -> list[dict]:
        return [r for r in e2e.airflow.dag_runs(DAILY_DAG_ID) if r["run_type"] == "backfill"]

    e2e.wait(lambda: len(backfill_runs()) == 3 and all(r["state"] in ("success", "failed")
                                                       for r in backfill_runs()),
             150, f"the three runs of backfill {backfill['id']} to end")
    runs = backfill_runs()
    assert sorted(r["logical_date"][:10] for r in runs) == days
    assert all(r["state"] == "success" for r in runs), runs
    for day, uri in zip(days, uris, strict=True):
        assert_one_execution(e2e, uri)
        ti = e2e.workflow_task_for(DAILY_DAG_ID, uri)
        assert ti is not None and ti["dag_run_id"] in {r["dag_run_id"] for r in runs}
        assert ti["dag_run_id"] == next(r["dag_run_id"] for r in runs if r["logical_date"][:10] == day)


def test_a_backfill_of_a_paused_dag_is_refused_not_silently_queued(e2e: E2E) -> None:
    before = e2e.airflow.get(f"/backfills?dag_id={DAILY_DAG_ID}")["total_entries"]
    e2e.airflow.request("PATCH", f"/dags/{DAILY_DAG_ID}", {"is_paused": True})
    try:
        with pytest.raises(StackError, match="is paused"):
            e2e.airflow.create_backfill(DAILY_DAG_ID, "2025-03-01T00:00:00Z", "2025-03-02T00:00:00Z")
    finally:
        e2e.airflow.unpause(DAILY_DAG_ID)
    assert e2e.airflow.get(f"/backfills?dag_id={DAILY_DAG_ID}")["total_entries"] == before


def test_a_failing_workflow_fails_the_task_with_the_reason_in_its_log(e2e: E2E) -> None:
    reason = "input folder has no readable part files (simulated)"
    e2e.stack.add_workflow(666, duration=WORKFLOW_SECONDS, outcome="FAILED", failure_message=reason)
    prefix = "landing/failing/"  # outside both notified prefixes: found by the S3 check alone
    uri = e2e.stack.upload_batch(f"{prefix}2025-02-01/")

    run = e2e.airflow.trigger(DAILY_DAG_ID, "2025-02-01T00:00:00Z", {"workflow_id": 666, "prefix": prefix})
    ti, run = e2e.wait_batch_done(DAILY_DAG_ID, uri, timeout=150)

    assert run["state"] == "failed", run
    assert ti["state"] == "failed", ti
    # A FAILED execution is not reattached to: a retry (the DAG has two) runs the workflow again. A try
    # lost to Airflow's defer race (apache/airflow#67287) reattaches instead, hence "at most".
    executions = e2e.executions_for(uri)
    assert ti["try_number"] == 3, ti
    assert 1 <= len(executions) <= 3, executions
    assert {e["status"] for e in executions} == {"FAILED"}
    last = max(e["id"] for e in executions)
    log = e2e.airflow.task_log(DAILY_DAG_ID, ti["dag_run_id"], "run_workflow", 3, ti["map_index"])
    assert f"Fire Insights execution {last} of workflow 666 ended FAILED" in log, log[-3000:]
    assert reason in log, log[-3000:]
