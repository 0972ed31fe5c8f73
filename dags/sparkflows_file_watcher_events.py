"""
Event-driven file watcher: every new ``_SUCCESS`` marker starts a DAG run that runs a Fire Insights workflow.

The Lambda file watcher's behaviour, inside Airflow. The DAG is scheduled on an Asset whose
``AssetWatcher`` runs ``S3SuccessFileTrigger`` in the triggerer: it long-polls the SQS queue that S3
notifies of markers under ``prefix``, and turns each completed folder (a batch) into an asset event
whose payload is the batch. The scheduler starts a DAG run for it; the run reads its batches from
``triggering_asset_events`` and runs the workflow once per batch with ``--var datapath=<batch uri>``.
Batches that arrive within the same scheduler loop share one run (one mapped workflow task each).

A message is deleted from the queue only once its asset events are stored in Airflow's database. The
watcher runs only while the DAG is unpaused: markers written while it is paused wait in the queue
(up to the queue's retention period) and are picked up after unpausing.

Settings: the Airflow Variable ``sparkflows_file_watcher_events``, a JSON object; every key is optional
and defaults to :data:`DEFAULTS`:

- ``sqs_queue_url``: the queue S3 notifies of ``_SUCCESS`` markers under ``prefix`` (one queue per DAG);
- ``bucket``, ``prefix``: only markers in this bucket, under this prefix, count;
- ``workflow_id``: the Fire Insights workflow to run (or the param ``workflow_id`` of a manual run);
- ``fire_insights_conn_id``, ``aws_conn_id``, ``region_name``: connections (and region) to use;
- ``poll_interval``: seconds between status checks of the workflow execution;
- ``workflow_timeout``: seconds after which the execution is stopped and the task fails (``null``: none);
- ``wait_time_seconds``, ``visibility_timeout``: SQS long polling, and how long a received message
  stays hidden until its events are stored;
- ``deferrable``: the workflow task waits in the triggerer, not in a worker slot (default true);
- ``retries``, ``retry_delay``: task retries and seconds between them. A retry of the workflow task
  whose execution is still running (or completed) reattaches to it instead of starting another; after a
  FAILED execution, a retry runs the workflow again. Keep at least one retry: Airflow 3.3 can fail a
  deferred task whose trigger fires within seconds of deferring (apache/airflow#67287).

The Variable is read when the file is parsed; a change applies at the next parse.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, Param, task
from sparkflows_common import batch_parameters, load_settings

from airflow_provider_sparkflows.operators.fire_insights import FireInsightsWorkflowOperator
from airflow_provider_sparkflows.triggers.s3_success_file import S3SuccessFileTrigger

DAG_ID = "sparkflows_file_watcher_events"

DEFAULTS: dict[str, Any] = {
    # The AWS documentation's placeholder account: set the Variable to your queue.
    "sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/sparkflows-file-watcher-events",
    "bucket": "sparkflows-landing",
    "prefix": "landing/events/",
    "workflow_id": 1,
    "fire_insights_conn_id": "fire_insights_default",
    "aws_conn_id": "aws_default",
    "region_name": None,
    "poll_interval": 30,
    "workflow_timeout": None,
    "wait_time_seconds": 20,
    "visibility_timeout": 120,
    "deferrable": True,
    "retries": 2,
    "retry_delay": 30,
}


settings = load_settings(DAG_ID, DEFAULTS)

# A plain name, not an ``s3://`` URI: that would load the amazon provider's URI handling (and boto3)
# every time this file is parsed. The watched location is in ``extra``.
success_markers = Asset(
    name="sparkflows_success_markers",
    extra={"location": f"s3://{settings['bucket']}/{settings['prefix']}"},
    watchers=[
        AssetWatcher(
            name="sparkflows_success_marker_watcher",
            trigger=S3SuccessFileTrigger(
                sqs_queue_url=settings["sqs_queue_url"],
                bucket=settings["bucket"],
                prefix=settings["prefix"],
                aws_conn_id=settings["aws_conn_id"],
                region_name=settings["region_name"],
                wait_time_seconds=settings["wait_time_seconds"],
                visibility_timeout=settings["visibility_timeout"],
            ),
        )
    ],
)


@task(retries=0)
def triggering_batches(**context: Any) -> list[dict[str, Any]]:
    """The batches of the asset events that started this run (one per ``_SUCCESS`` marker)."""
    events = context["triggering_asset_events"][success_markers]
    batches = [event.extra["payload"] for event in events if "payload" in (event.extra or {})]
    if not batches:
        # A manual run has no asset event: say so rather than succeed having done nothing.
        raise ValueError(
            f"DAG run has no {success_markers.name!r} asset event with a batch payload; this DAG runs "
            f"when a _SUCCESS marker lands under s3://{settings['bucket']}/{settings['prefix']}"
        )
    for batch in batches:
        print(f"Batch {batch['uri']} (marker {batch['key']}, SQS message {batch.get('message_id')})")
    return batches


with DAG(
    dag_id=DAG_ID,
    description="Run a Fire Insights workflow on every S3 folder whose _SUCCESS marker lands",
    schedule=[success_markers],
    start_date=datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    params={
        "workflow_id": Param(settings["workflow_id"], type="integer", description="Fire Insights workflow"),
    },
    default_args={
        "retries": settings["retries"],
        "retry_delay": datetime.timedelta(seconds=settings["retry_delay"]),
    },
    tags=["sparkflows", "file-watcher"],
    doc_md=__doc__,
) as dag:
    batches = triggering_batches()
    FireInsightsWorkflowOperator.partial(
        task_id="run_workflow",
        workflow_id="{{ params.workflow_id }}",
        fire_insights_conn_id=settings["fire_insights_conn_id"],
        poll_interval=settings["poll_interval"],
        timeout=settings["workflow_timeout"],
        deferrable=settings["deferrable"],
    ).expand(parameters=batches.map(batch_parameters))
