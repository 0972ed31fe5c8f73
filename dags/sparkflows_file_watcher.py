"""
Scheduled file watcher: each day, wait for that day's ``_SUCCESS`` marker and run a Fire Insights workflow.

Every run waits for one folder, ``<prefix><run date>/`` (e.g. ``landing/daily/2025-06-01/``), of the
bucket. ``S3SuccessFileSensor`` first looks for the marker in S3, so a run for a past date (a backfill
from the UI, a late start) completes at once; otherwise it waits, deferred in the triggerer, for the S3
event notification on the SQS queue. Then ``FireInsightsWorkflowOperator`` runs the workflow once per
batch with ``--var datapath=s3://bucket/folder/`` (dynamic task mapping over the sensor's batches).

Settings: the Airflow Variable ``sparkflows_file_watcher``, a JSON object; every key is optional and
defaults to :data:`DEFAULTS`:

- ``sqs_queue_url``: the queue S3 notifies of ``_SUCCESS`` markers under ``prefix`` (one queue per DAG);
- ``bucket``, ``prefix``: where the daily folders are; ``prefix`` ends with ``/``;
- ``workflow_id``: the Fire Insights workflow to run;
- ``schedule``: cron expression or preset (``@daily``);
- ``fire_insights_conn_id``, ``aws_conn_id``, ``region_name``: connections (and region) to use;
- ``poll_interval``: seconds between status checks of the workflow execution;
- ``workflow_timeout``: seconds after which the execution is stopped and the task fails (``null``: none);
- ``sensor_timeout``: seconds a run waits for its marker before failing;
- ``poke_interval``, ``wait_time_seconds``: pause between empty receive rounds, and SQS long polling;
- ``deferrable``: wait in the triggerer, not in a worker slot (default true);
- ``retries``, ``retry_delay``: task retries and seconds between them. A retry of the workflow task
  whose execution is still running (or completed) reattaches to it instead of starting another; after a
  FAILED execution, a retry runs the workflow again. Keep at least one retry: Airflow 3.3 can fail a
  deferred task whose trigger fires within seconds of deferring (apache/airflow#67287).

The Variable is read when the file is parsed; a change applies at the next parse. The run's folder and
workflow can be overridden per run through the params ``prefix`` and ``workflow_id``.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG, Param
from sparkflows_common import batch_parameters, load_settings

from airflow_provider_sparkflows.operators.fire_insights import FireInsightsWorkflowOperator
from airflow_provider_sparkflows.sensors.s3_success_file import S3SuccessFileSensor

DAG_ID = "sparkflows_file_watcher"

DEFAULTS: dict[str, Any] = {
    # The AWS documentation's placeholder account: set the Variable to your queue.
    "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/sparkflows-file-watcher",
    "bucket": "sparkflows-landing",
    "prefix": "landing/daily/",
    "workflow_id": 1,
    "schedule": "@daily",
    "fire_insights_conn_id": "fire_insights_default",
    "aws_conn_id": "aws_default",
    "region_name": None,
    "poll_interval": 30,
    "workflow_timeout": None,
    "sensor_timeout": 24 * 3600,
    "poke_interval": 5,
    "wait_time_seconds": 20,
    "deferrable": True,
    "retries": 2,
    "retry_delay": 30,
}


settings = load_settings(DAG_ID, DEFAULTS)

with DAG(
    dag_id=DAG_ID,
    description="Run a Fire Insights workflow on each day's S3 folder once its _SUCCESS marker lands",
    schedule=settings["schedule"],
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    params={
        "prefix": Param(settings["prefix"], type="string", description="Folder holding the daily folders"),
        "workflow_id": Param(settings["workflow_id"], type="integer", description="Fire Insights workflow"),
    },
    default_args={
        "retries": settings["retries"],
        "retry_delay": datetime.timedelta(seconds=settings["retry_delay"]),
    },
    tags=["sparkflows", "file-watcher"],
    doc_md=__doc__,
) as dag:
    wait_for_batch = S3SuccessFileSensor(
        task_id="wait_for_success_file",
        sqs_queue_url=settings["sqs_queue_url"],
        bucket=settings["bucket"],
        # A manual run without a logical date waits for the folder of the day it was triggered.
        batch_prefix="{{ params.prefix }}{{ (dag_run.logical_date or dag_run.run_after) | ds }}/",
        aws_conn_id=settings["aws_conn_id"],
        region_name=settings["region_name"],
        wait_time_seconds=settings["wait_time_seconds"],
        poke_interval=settings["poke_interval"],
        timeout=settings["sensor_timeout"],
        deferrable=settings["deferrable"],
    )

    FireInsightsWorkflowOperator.partial(
        task_id="run_workflow",
        workflow_id="{{ params.workflow_id }}",
        fire_insights_conn_id=settings["fire_insights_conn_id"],
        poll_interval=settings["poll_interval"],
        timeout=settings["workflow_timeout"],
        deferrable=settings["deferrable"],
    ).expand(parameters=wait_for_batch.output.map(batch_parameters))
