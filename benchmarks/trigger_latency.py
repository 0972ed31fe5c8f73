"""Latency from "message sent to SQS" to "S3SuccessFileTrigger yielded the event", against a moto server.

Runs the trigger as an AssetWatcher would (``run()``, one event per batch) with long polling
(``wait_time_seconds``), sends one S3 ``_SUCCESS`` notification at a time and measures until the event
comes out. Prints median and p95 over ``--samples``. Loopback moto, so this is the trigger's own
overhead plus moto's long-poll reaction time, not AWS's delivery delay.

    .venv/bin/python benchmarks/trigger_latency.py --samples 20
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from _common import fill_queue, median_p95, moto_server, s3_event_body


async def measure(url: str, samples: int, wait_time_seconds: int) -> list[float]:
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    from airflow_provider_sparkflows.triggers.s3_success_file import S3SuccessFileTrigger

    trigger = S3SuccessFileTrigger(
        sqs_queue_url=url, wait_time_seconds=wait_time_seconds, visibility_timeout=30
    )
    events: Any = trigger.run()  # an async generator; typed as AsyncIterator
    latencies: list[float] = []
    async with await SqsHook(aws_conn_id="aws_default").get_async_conn() as sender:
        for i in range(samples):
            pending = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0.3)  # let the trigger sit in its long poll, as it would in production
            sent = time.perf_counter()
            await sender.send_message(QueueUrl=url, MessageBody=s3_event_body("landing", f"raw/{i}/_SUCCESS"))
            event = await asyncio.wait_for(pending, 30)
            latencies.append(time.perf_counter() - sent)
            assert event.payload["uri"] == f"s3://landing/raw/{i}/"
    await events.aclose()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--wait-time-seconds", type=int, default=20)
    args = parser.parse_args()

    with moto_server() as server:
        url = fill_queue(server.client("sqs"), "latency", [])
        latencies = asyncio.run(measure(url, args.samples, args.wait_time_seconds))
    ms = sorted(x * 1000 for x in latencies)
    median, p95 = median_p95(ms)
    print(f"samples={len(ms)} wait_time_seconds={args.wait_time_seconds}")
    print(f"median={median:.1f} ms p95={p95:.1f} ms min={ms[0]:.1f} ms max={ms[-1]:.1f} ms")


if __name__ == "__main__":
    main()
