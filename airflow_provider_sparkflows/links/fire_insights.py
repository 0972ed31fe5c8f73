"""Operator extra link to the Fire Insights page of a workflow execution."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

EXECUTION_URL_XCOM_KEY = "execution_url"


class FireInsightsExecutionLink(BaseOperatorLink):
    """
    "Fire Insights execution": opens the execution's result page in the Fire Insights UI.

    The operator pushes the URL under the XCom key ``execution_url`` as soon as the execution starts,
    which is also this link's ``xcom_key``, so the button works while the task is still running.
    """

    name = "Fire Insights execution"

    @property
    def xcom_key(self) -> str:
        return EXECUTION_URL_XCOM_KEY

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=EXECUTION_URL_XCOM_KEY, ti_key=ti_key) or ""
