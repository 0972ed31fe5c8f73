"""Pytest fixtures serving a local Fire Insights simulator, registered through the ``pytest11`` entry point.

Any project with the provider installed gets them without a conftest::

    def test_my_dag(fire_insights_simulator):
        fire_insights_simulator.add_workflow(7, duration=0.5)
        ...  # a Fire Insights connection with host=fire_insights_simulator.url and its .token
        assert fire_insights_simulator.execution_count(7) == 1

    def test_old_server(fire_insights_simulator_factory):
        sim = fire_insights_simulator_factory(auth_header="bearer", legacy_get_stop_kill=True)
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_sparkflows.testing.simulator import FireInsightsSimulator, make_jwt

SimulatorFactory = Callable[..., FireInsightsSimulator]


def unique_token() -> str:
    """A JWT no other test uses: a random subject signed with a random secret."""
    return make_jwt(sub=f"pytest-{secrets.token_hex(4)}", secret=secrets.token_hex(16))


@pytest.fixture
def fire_insights_simulator_factory() -> Iterator[SimulatorFactory]:
    """Start simulators with any :class:`FireInsightsSimulator` options; all stop at teardown.

    The token defaults to a fresh :func:`unique_token`.
    """
    started: list[FireInsightsSimulator] = []

    def factory(**kwargs: Any) -> FireInsightsSimulator:
        kwargs.setdefault("token", unique_token())
        simulator = FireInsightsSimulator(**kwargs).start()
        started.append(simulator)
        return simulator

    yield factory
    for simulator in started:
        simulator.stop()


@pytest.fixture
def fire_insights_simulator(fire_insights_simulator_factory: SimulatorFactory) -> FireInsightsSimulator:
    """A started simulator on a free loopback port with a unique token (``.url``, ``.token``)."""
    return fire_insights_simulator_factory()
