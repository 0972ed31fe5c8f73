"""Prepare a fresh Airflow metadata database for the local stack, in one interpreter.

Run by :mod:`demo.stack` with the stack's Airflow environment, before any Airflow component starts:
``python -m demo._bootstrap <spec.json>``. The spec holds the connections and Variables to create. Doing
the migration and the inserts in one process saves the several seconds each ``airflow`` CLI call costs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def main(spec_path: str) -> int:
    spec: dict[str, Any] = json.loads(Path(spec_path).read_text())
    from airflow.utils import db

    db.initdb()

    from airflow.models import Connection, Variable
    from airflow.utils.session import create_session

    with create_session() as session:
        for conn_id, fields in spec.get("connections", {}).items():
            extra = fields.get("extra")
            session.add(
                Connection(
                    conn_id=conn_id,
                    conn_type=fields["conn_type"],
                    description=fields.get("description"),
                    host=fields.get("host"),
                    password=fields.get("password"),
                    extra=json.dumps(extra) if isinstance(extra, dict) else extra,
                )
            )
    for key, value in spec.get("variables", {}).items():
        Variable.set(key, value, serialize_json=not isinstance(value, str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
