"""DAGs for tests/test_fire_insights_operator.py: one per mode, on the connection ``fire_insights_test``."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from airflow_provider_sparkflows.operators.fire_insights import FireInsightsWorkflowOperator

START = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
PARAMS = {"workflow_id": 1, "datapath": "s3://bucket/raw/2024-01-01/"}

VARIANTS: dict[str, dict] = {
    "sync": {"deferrable": False},
    "deferrable": {"deferrable": True},
    "sync_timeout": {"deferrable": False, "timeout": 1.5},
    "deferrable_timeout": {"deferrable": True, "timeout": 1.5},
    "sync_execution_timeout": {"deferrable": False, "execution_timeout": datetime.timedelta(seconds=3)},
    "no_wait": {"wait_for_completion": False},
    "sync_retry": {"deferrable": False, "retries": 1, "retry_delay": datetime.timedelta(0)},
    "deferrable_retry": {"deferrable": True, "retries": 1, "retry_delay": datetime.timedelta(0)},
    "sync_retry_timeout": {
        "deferrable": False, "retries": 1, "retry_delay": datetime.timedelta(0), "timeout": 4,
    },
}

for name, kwargs in VARIANTS.items():
    with DAG(f"fi_operator_{name}", schedule=None, start_date=START, catchup=False, params=PARAMS) as dag:
        FireInsightsWorkflowOperator(
            task_id="run_workflow",
            workflow_id="{{ params.workflow_id }}",
            parameters={"datapath": "{{ params.datapath }}"},
            fire_insights_conn_id="fire_insights_test",
            poll_interval=0.2,
            log_tail_lines=5,
            **kwargs,
        )
    globals()[f"dag_{name}"] = dag
