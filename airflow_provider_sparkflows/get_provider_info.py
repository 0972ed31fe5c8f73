"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_provider_sparkflows import __version__

_PKG = "airflow_provider_sparkflows"


def get_provider_info() -> dict[str, Any]:
    """Return what ``airflow providers list`` and the connection form show for this provider."""
    return {
        "package-name": "airflow-provider-sparkflows",
        "name": "Sparkflows Fire Insights",
        "description": "Run Sparkflows Fire Insights workflows when `_SUCCESS` markers land in S3.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Sparkflows Fire Insights",
                "external-doc-url": "https://docs.sparkflows.io/",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Sparkflows Fire Insights",
                "python-modules": [f"{_PKG}.hooks.fire_insights"],
            }
        ],
        "operators": [
            {
                "integration-name": "Sparkflows Fire Insights",
                "python-modules": [f"{_PKG}.operators.fire_insights"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Sparkflows Fire Insights",
                "python-modules": [f"{_PKG}.sensors.s3_success_file"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Sparkflows Fire Insights",
                "python-modules": [
                    f"{_PKG}.triggers.fire_insights",
                    f"{_PKG}.triggers.s3_success_file",
                ],
            }
        ],
        "extra-links": [f"{_PKG}.links.fire_insights.FireInsightsExecutionLink"],
        "connection-types": [
            {
                "hook-class-name": f"{_PKG}.hooks.fire_insights.FireInsightsHook",
                "hook-name": "Sparkflows Fire Insights",
                "connection-type": "fire_insights",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port"],
                    "relabeling": {"host": "Fire Insights URL", "password": "Token"},
                    "placeholders": {
                        "host": "https://fire.example.com:8080",
                        "password": "personal access token (leave empty when using token_kms_ciphertext)",
                    },
                },
                "conn-fields": {
                    "auth_header": {
                        "label": "Auth header",
                        "description": "How the token is sent: 'token' (header `token:`) or 'bearer'.",
                        "schema": {"type": ["string", "null"], "enum": ["token", "bearer", None]},
                    },
                    "token_kms_ciphertext": {
                        "label": "KMS-encrypted token",
                        "description": "Base64 KMS ciphertext of the token, used instead of the password.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "kms_encryption_context": {
                        "label": "KMS encryption context",
                        "description": "JSON object given to KMS Decrypt as EncryptionContext.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "kms_key_id": {
                        "label": "KMS key id",
                        "description": "Key id or ARN given to KMS Decrypt (optional).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "aws_conn_id": {
                        "label": "AWS connection id",
                        "description": "Airflow connection used for KMS (default aws_default).",
                        "schema": {"type": ["string", "null"]},
                    },
                    "verify": {
                        "label": "Verify TLS",
                        "description": "true, false, or the path of a CA bundle.",
                        "schema": {"type": ["string", "boolean", "null"]},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Per-request timeout in seconds.",
                        "schema": {"type": ["number", "null"]},
                    },
                },
            }
        ],
    }
