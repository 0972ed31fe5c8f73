"""What both file-watcher DAGs share: their settings Variable and the workflow parameters of a batch.

Not a DAG file (the DAG processor reads it, finds no DAG and moves on); copy it along with the DAGs
into your DAGs folder, which Airflow puts on ``sys.path`` when it parses them.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Variable


def load_settings(variable: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """The DAG's settings: ``defaults`` updated with the JSON Variable ``variable``, if it exists."""
    configured = Variable.get(variable, default=None, deserialize_json=True)
    if configured is not None and not isinstance(configured, dict):
        kind = type(configured).__name__
        raise ValueError(f"Airflow Variable {variable!r} must be a JSON object, got a {kind}")
    return {**defaults, **(configured or {})}


def batch_parameters(batch: dict[str, Any]) -> dict[str, str]:
    """The workflow's runtime parameters for one batch: ``--var datapath=s3://bucket/folder/``."""
    return {"datapath": batch["uri"]}
