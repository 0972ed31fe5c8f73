"""One real local deployment for every end-to-end test: moto, the Fire Insights simulator and Airflow.

The stack (:class:`demo.stack.LocalStack`, the same one ``make demo`` runs) starts once per session under
``.airflow/e2e`` on free loopback ports, with both file-watcher DAGs of ``dags/`` unpaused, and is
stopped (every process group it started) when the session ends, whatever happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.stack import DAG_IDS, EVENTS_DAG_ID, LocalStack, StackConfig
from tests.e2e.helpers import E2E, WORKFLOW_SECONDS

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the end-to-end tests last, so the session-scoped stack is not idling during the other tests."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2E]:
    """The running deployment, both DAGs unpaused; stopped at the end of the session."""
    config = StackConfig(root=ROOT / ".airflow" / "e2e", workflow_seconds=WORKFLOW_SECONDS, poll_interval=1.0)
    with LocalStack(config, echo=lambda message: print(f"[e2e stack] {message}", flush=True)) as stack:
        for dag_id in DAG_IDS:
            stack.airflow.unpause(dag_id)
        # Register the events DAG's asset watcher now rather than at its next periodic parse.
        stack.airflow.reparse(EVENTS_DAG_ID)
        yield E2E(stack)
