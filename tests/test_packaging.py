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


@pytest.mark.parametrize(
    ("uri", "base_url", "extra"),
    [
        # The two connection URIs of the README.
        ("fire-insights://:T@https%3A%2F%2Ffire.example.com%3A8443/?auth_header=token",
         "https://fire.example.com:8443", {"auth_header": "token"}),
        ("fire-insights://:T@fire.example.com:8443/fire?auth_header=bearer",
         "http://fire.example.com:8443/fire", {"auth_header": "bearer"}),
    ],
)
def test_readme_connection_uris_give_the_documented_base_url(
    uri: str, base_url: str, extra: dict[str, str]
) -> None:
    from airflow.models.connection import Connection

    from airflow_provider_sparkflows.fire_insights_api import base_url_from_connection

    conn = Connection(uri=uri)
    assert conn.conn_type == "fire_insights"
    assert base_url_from_connection(conn.host, conn.port, conn.schema) == base_url
    assert conn.extra_dejson == extra
    assert conn.password == "T"
