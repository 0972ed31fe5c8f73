"""DAGs for tests/test_s3_success_file_sensor.py; the queue, bucket and folders come in as params/run_conf."""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_sparkflows.sensors.s3_success_file import S3SuccessFileSensor

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
PARAMS: dict[str, Any] = {"queue_url": "", "bucket": "landing", "prefix": "raw/"}
# Short enough that a killed poke's messages come back quickly, long enough for one poke + hand-on.
VISIBILITY_TIMEOUT = 3
COMMON: dict[str, Any] = {
    "sqs_queue_url": "{{ params.queue_url }}",
    "bucket": "{{ params.bucket }}",
    "wait_time_seconds": 1,
    "visibility_timeout": VISIBILITY_TIMEOUT,
    "poke_interval": 0.2,
    "timeout": 60,
}


@task
def consume(batch: dict) -> str:
    """One mapped task per batch, as FireInsightsWorkflowOperator.partial(...).expand(...) would be."""
    return str(batch["uri"])


MODES: dict[str, dict[str, Any]] = {
    "poke": {"mode": "poke"},
    "reschedule": {"mode": "reschedule", "poke_interval": 1},
    "deferrable": {"deferrable": True},
    "deferrable_soft_fail": {"deferrable": True, "timeout": 2, "soft_fail": True},
}

for name, kwargs in MODES.items():
    with DAG(f"s3_sensor_{name}", schedule=None, start_date=START, catchup=False, params=PARAMS) as dag:
        wait = S3SuccessFileSensor(task_id="wait", prefix="{{ params.prefix }}", **{**COMMON, **kwargs})
        consume.expand(batch=wait.output)
    globals()[f"dag_{name}"] = dag

with DAG(
    "s3_sensor_backfill", schedule="@daily", start_date=START, catchup=False, params=PARAMS
) as dag_backfill:
    S3SuccessFileSensor(task_id="wait", batch_prefix="raw/iot/{{ ds }}/", **COMMON)

with DAG(
    "s3_sensor_two_folders",
    schedule=None,
    start_date=START,
    catchup=False,
    params={**PARAMS, "folder_a": "raw/a/", "folder_b": "raw/b/"},
) as dag_two_folders:
    S3SuccessFileSensor(task_id="wait_a", batch_prefix="{{ params.folder_a }}", **COMMON)
    S3SuccessFileSensor(task_id="wait_b", batch_prefix="{{ params.folder_b }}", **COMMON)
