"""The example DAGs of ``dags/`` parse cleanly, fast, and without pulling AWS or HTTP clients in.

Parsed in a fresh interpreter: this test process has long imported boto3 and requests itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = r"""
import json, sys, time, warnings
from airflow.dag_processing.dagbag import BundleDagBag
CLIENTS = ("boto3", "botocore", "requests", "aiohttp", "aiobotocore")
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    started = time.perf_counter()
    # As the DAG processor and the workers parse a bundle: its folder goes on sys.path, so the DAG
    # files can import their shared module (dags/sparkflows_common.py).
    bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=sys.argv[1], bundle_name="dags-folder")
    seconds = time.perf_counter() - started
print(json.dumps({
    "dag_ids": sorted(bag.dag_ids),
    "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
    "dag_warnings": [str(w) for w in getattr(bag, "dag_warnings", set())],
    "modules": sorted(m for m in CLIENTS if m in sys.modules),
    "tasks": {d: sorted(bag.dags[d].task_ids) for d in bag.dag_ids},
    "seconds": seconds,
}))
"""


def parse_dags() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "dags")], env=env, cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_both_file_watcher_dags_parse_cleanly_and_fast() -> None:
    parsed = parse_dags()

    assert parsed["import_errors"] == {}
    assert parsed["dag_ids"] == ["sparkflows_file_watcher", "sparkflows_file_watcher_events"]
    assert parsed["tasks"] == {
        "sparkflows_file_watcher": ["run_workflow", "wait_for_success_file"],
        "sparkflows_file_watcher_events": ["run_workflow", "triggering_batches"],
    }
    assert parsed["warnings"] == [] and parsed["dag_warnings"] == []
    assert parsed["modules"] == [], "parsing the DAG files must not import AWS or HTTP clients"
    assert parsed["seconds"] < 5, parsed["seconds"]
