"""Latency and memory of S3SuccessFileTrigger (deferred-task mode) against the amazon SqsSensorTrigger.

Both triggers run in this process and event loop, alternating (ABBA order), against a moto server
started here. For each sample a trigger is started on a fresh empty queue, given ``--settle`` seconds to
build its aiobotocore client and sit in its long poll (``WaitTimeSeconds=20`` on both sides), then one S3
``_SUCCESS`` notification is sent; latency runs from just before ``SendMessage`` to the ``TriggerEvent``.
Memory samples are separate runs (tracemalloc slows Python down) with tracemalloc on from building the
trigger to its event: the peak bytes allocated, trigger start-up (client) included. The sender's own
``SendMessage`` (client built beforehand) falls inside that window on both sides alike.

Each side does what it needs to hand one marker to its task:

* ours: ``S3SuccessFileTrigger(deferred_task=True, prefix=...)``: long-poll receive, then receive until
  the queue answers empty (one more call), event with the batch and the receipt; the message stays
  hidden and the resumed task deletes it (not measured here);
* amazon: ``SqsSensorTrigger`` with ``max_messages=10``, a JSONPath filter matching the marker's
  (form-encoded) key; long-poll receive, delete the matched message, event with the raw messages.

Loopback moto, so this is each trigger's own overhead plus moto's long-poll reaction, not AWS delivery.

    .venv/bin/python benchmarks/trigger_vs_amazon.py --samples 12 --memory-samples 3
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote_plus

from _common import (
    Measured,
    fill_queue,
    fmt_kib,
    fmt_ms,
    median_p95,
    moto_server,
    ratio,
    s3_event_body,
    traced_peak,
)

MARKER_KEY = "raw/iot/2024-05-01/_SUCCESS"
MARKER_URI = "s3://landing/raw/iot/2024-05-01/"
WAIT_TIME_SECONDS = 20


def ours(url: str) -> Any:
    from airflow_provider_sparkflows.triggers.s3_success_file import S3SuccessFileTrigger

    return S3SuccessFileTrigger(
        sqs_queue_url=url, prefix="raw/iot/", wait_time_seconds=WAIT_TIME_SECONDS, visibility_timeout=30,
        deferred_task=True, deadline=time.time() + 120,
    )


def amazon(url: str) -> Any:
    from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger

    return SqsSensorTrigger(
        sqs_queue=url, max_messages=10, num_batches=1, wait_time_seconds=WAIT_TIME_SECONDS,
        visibility_timeout=30, message_filtering="jsonpath",
        message_filtering_config="Records[*].s3.object.key",
        # S3 form-encodes keys in event notifications; a filter on the raw body must match that form.
        message_filtering_match_values=[quote_plus(MARKER_KEY)], waiter_delay=1,
    )


def check(side: str, payload: dict[str, Any]) -> None:
    if payload.get("status") != "success":
        raise RuntimeError(f"{side} trigger fired {payload}")
    if side == "ours" and [b["uri"] for b in payload["batches"]] != [MARKER_URI]:
        raise RuntimeError(f"ours fired the wrong batches: {payload['batches']}")
    if side == "amazon" and len(payload["message_batch"]) != 1:
        raise RuntimeError(f"amazon fired {len(payload['message_batch'])} messages, expected 1")


async def one_sample(side: str, make: Callable[[str], Any], url: str, sender: Any, settle: float) -> float:
    """Run one trigger until its event; return seconds from sending the marker to the event."""
    events = make(url).run()
    pending = asyncio.ensure_future(anext(events))
    try:
        await asyncio.sleep(settle)  # scenario set-up, not synchronisation: the trigger waits in its poll
        if pending.done():
            raise RuntimeError(f"{side} trigger fired before the marker was sent: {pending.result()}")
        sent = time.perf_counter()
        await sender.send_message(QueueUrl=url, MessageBody=s3_event_body("landing", MARKER_KEY))
        event = await asyncio.wait_for(pending, WAIT_TIME_SECONDS + 10)
        latency = time.perf_counter() - sent
    finally:
        if not pending.done():
            pending.cancel()
        await events.aclose()
    check(side, event.payload)
    return latency


async def measure(sqs: Any, samples: int, memory_samples: int, settle: float) -> dict[str, Measured]:
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    sides: dict[str, Callable[[str], Any]] = {"ours": ours, "amazon": amazon}
    results = {side: Measured() for side in sides}
    queue_no = 0

    def queue() -> str:
        nonlocal queue_no
        queue_no += 1
        return fill_queue(sqs, f"trigger-bench-{queue_no}", [])

    async with await SqsHook(aws_conn_id="aws_default").get_async_conn() as sender:
        for side, make in sides.items():  # warm-up, not counted: imports, botocore model files
            await one_sample(side, make, queue(), sender, settle)
        for round_no in range(max(samples, memory_samples)):
            order = list(sides) if round_no % 2 == 0 else list(reversed(sides))
            if round_no < samples:
                for side in order:
                    results[side].seconds.append(await one_sample(side, sides[side], queue(), sender, settle))
            if round_no < memory_samples:
                for side in reversed(order):
                    url = queue()
                    with traced_peak(results[side].peak_bytes):
                        await one_sample(side, sides[side], url, sender, settle)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=12, help="timed samples per side")
    parser.add_argument("--memory-samples", type=int, default=3, help="traced samples per side")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="seconds a trigger runs before the marker is sent (client set-up + poll)")
    args = parser.parse_args()

    started = time.monotonic()
    with moto_server() as server:
        results = asyncio.run(measure(server.client("sqs"), args.samples, args.memory_samples, args.settle))
    elapsed = time.monotonic() - started

    print(f"{args.samples} timed + {args.memory_samples} traced samples per side, settle {args.settle} s, "
          f"ABBA order, one event loop; all measured within {elapsed:.0f} s")
    header = (f"{'trigger':<22} {'latency median':>15} {'p95':>9} {'min':>9} {'max':>9} "
              f"{'peak mem median':>16} {'max':>10}")
    print(header)
    print("-" * len(header))
    names = {"ours": "S3SuccessFileTrigger", "amazon": "SqsSensorTrigger"}
    for side, m in results.items():
        med, p95 = median_p95(m.seconds)
        b_med = median_p95([float(b) for b in m.peak_bytes])[0]
        print(f"{names[side]:<22} {fmt_ms(med):>15} {fmt_ms(p95):>9} {fmt_ms(min(m.seconds)):>9} "
              f"{fmt_ms(max(m.seconds)):>9} {fmt_kib(b_med):>16} {fmt_kib(max(m.peak_bytes)):>10}")
    o, a = results["ours"], results["amazon"]
    o_med, o_p95 = median_p95(o.seconds)
    a_med, a_p95 = median_p95(a.seconds)
    o_mem = median_p95([float(x) for x in o.peak_bytes])[0]
    a_mem = median_p95([float(x) for x in a.peak_bytes])[0]
    print()
    print(f"ratio ours/amazon: latency median {ratio(o_med, a_med)}, latency p95 {ratio(o_p95, a_p95)}, "
          f"peak memory median {ratio(o_mem, a_mem)}")


if __name__ == "__main__":
    main()
