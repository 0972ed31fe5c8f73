"""Cost of one poke: S3SuccessFileSensor against the amazon provider's SqsSensor, same process, same minute.

Both sensors poke a moto-server queue holding ``--messages`` unrelated S3 events and one ``_SUCCESS``
marker; each poke starts from the same queue content (messages re-sent between pokes). Prints the median
wall time per poke and the ratio ours / amazon's. They do different work: SqsSensor receives one
batch of up to 10 messages and deletes what it received (unfiltered here), while S3SuccessFileSensor
scans until it finds the marker, releases everything else and deletes only the marker; so the ratio is
"what finding one marker among N messages costs", not a like-for-like micro-benchmark.

    .venv/bin/python benchmarks/sensor_vs_amazon.py --messages 50 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")


class _TI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from tests.conftest import MotoServer
    from tests.s3_events_helpers import s3_event_body, send_all

    server = MotoServer()
    server.start()
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": server.url, "region_name": "us-east-1"}}
    )
    try:
        from airflow.providers.amazon.aws.sensors.sqs import SqsSensor

        from airflow_provider_sparkflows.sensors.s3_success_file import S3SuccessFileSensor

        sqs = server.client("sqs")
        bodies = [s3_event_body("landing", f"raw/x/{i}/part") for i in range(args.messages)]
        bodies.append(s3_event_body("landing", "raw/iot/_SUCCESS"))
        times: dict[str, list[float]] = {"ours": [], "amazon": []}
        for round_no in range(args.rounds):
            for name in ("ours", "amazon"):
                url = sqs.create_queue(QueueName=f"bench-{name}-{round_no}")["QueueUrl"]
                send_all(sqs, url, bodies)
                sensor: Any
                if name == "ours":
                    sensor = S3SuccessFileSensor(task_id="ours", sqs_queue_url=url, prefix="raw/iot/",
                                                 wait_time_seconds=0, visibility_timeout=30)
                else:
                    sensor = SqsSensor(task_id="amazon", sqs_queue=url, max_messages=10, wait_time_seconds=0)
                started = time.perf_counter()
                sensor.poke({"ti": _TI()})
                times[name].append(time.perf_counter() - started)
    finally:
        server.stop()
    ours, amazon = statistics.median(times["ours"]), statistics.median(times["amazon"])
    print(f"messages={args.messages + 1} rounds={args.rounds}")
    print(f"S3SuccessFileSensor poke median {ours * 1000:.1f} ms (scan, release {args.messages}, find 1)")
    print(f"SqsSensor poke median {amazon * 1000:.1f} ms (one receive of 10, delete them)")
    print(f"ratio ours/amazon = {ours / amazon:.2f}")


if __name__ == "__main__":
    main()
