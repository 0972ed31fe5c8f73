"""What a DAG author gets from installing the package: provider registration and cheap imports."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY_MODULES = ("boto3", "botocore", "aiobotocore", "requests", "aiohttp")


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    return set(out.split())


@pytest.mark.parametrize(
    "module",
    [
        "airflow_provider_sparkflows.operators.fire_insights",
        "airflow_provider_sparkflows.sensors.s3_success_file",
        "airflow_provider_sparkflows.triggers.s3_success_file",
        "airflow_provider_sparkflows.triggers.fire_insights",
        "airflow_provider_sparkflows.hooks.fire_insights",
    ],
)
def test_importing_for_dag_parsing_pulls_in_no_client_library(module: str) -> None:
    loaded = _modules_after_import(f"import {module}")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY_MODULES}


@pytest.mark.parametrize(
    "module", ["airflow_provider_sparkflows.fire_insights_api", "airflow_provider_sparkflows.s3_events"]
)
def test_pure_logic_modules_import_nothing_from_airflow(module: str) -> None:
    loaded = _modules_after_import(f"import {module}")
    assert "airflow" not in {m.split(".")[0] for m in loaded}
    assert not {m for m in loaded if m.split(".")[0] in HEAVY_MODULES}


def test_airflow_lists_the_provider_and_its_link() -> None:
    def cli(*args: str) -> str:
        return subprocess.run(
            [sys.executable, "-m", "airflow", *args], check=True, capture_output=True, text=True,
        ).stdout

    assert "airflow-provider-sparkflows" in cli("providers", "list")
    assert "airflow_provider_sparkflows.links.fire_insights.FireInsightsExecutionLink" in cli(
        "providers", "links"
    )
    hooks = cli("providers", "hooks")
    assert "fire_insights" in hooks
