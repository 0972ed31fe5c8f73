"""Cost of one poke: S3SuccessFileSensor against the amazon provider's SqsSensor, same process, same minute.

Both sensors poke queues on a moto server started here; the two sides alternate (ABBA order) so they see
the same machine load. Each poke runs on a fresh queue, either timed or with tracemalloc started just
before and stopped just after it, for the peak memory allocated during the poke (tracemalloc slows Python
down, so timed pokes go without it). Two modes:

* ``reschedule``: a fresh sensor per poke, as with ``mode="reschedule"``: both sides build their boto3
  client inside the measurement;
* ``poke``: one sensor instance for all pokes, as with ``mode="poke"``: amazon's sensor keeps its client
  (``AwsBaseSensor.hook`` is cached) and so does ours (``S3SuccessFileSensor.sqs_client`` is cached).

A reference line gives the cost of building one client (``SqsHook().get_conn()``).

What "one poke" covers on each side (the work each needs to have found the marker and deleted it):

* ours: ``poke()`` (receive until the queue answers empty, release the unmatched messages) plus
  ``hand_on()`` (record the batch, delete the marker's message), as ``execute()`` runs them;
* amazon: ``SqsSensor.poke()`` with a JSONPath filter on ``Records[*].s3.object.key`` matching the
  marker's key, ``max_messages=10`` and ``num_batches`` = enough receives to reach the marker; it deletes
  what matched and leaves the unmatched messages hidden for their visibility timeout (it does not
  release them: another consumer would not see them for 30 s).

Scenarios: ``empty`` (nothing to find), ``marker`` (the queue holds only the marker: like for like) and
``unrelated+marker`` (``--unrelated`` data-file events, then the marker).

    .venv/bin/python benchmarks/sensor_vs_amazon.py --rounds 5 --memory-rounds 2 --unrelated 50
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import quote_plus

from _common import (
    Measured,
    fill_queue,
    fmt_kib,
    fmt_ms,
    measure_peak,
    median_p95,
    moto_server,
    ratio,
    timed,
    unrelated_and_marker,
)

MARKER_KEY = "raw/iot/2024-05-01/_SUCCESS"
# S3 form-encodes keys in event notifications, so a filter on the raw body must match the encoded key.
ENCODED_MARKER_KEY = quote_plus(MARKER_KEY)


class _TI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


class _StateStore:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


def ours_poker(reuse: bool) -> Callable[[str], bool]:
    """Poke a S3SuccessFileSensor (fresh per poke, or one instance), plus the hand-on deleting the marker."""
    from airflow_provider_sparkflows.sensors.s3_success_file import S3SuccessFileSensor

    def make() -> S3SuccessFileSensor:
        return S3SuccessFileSensor(task_id="ours", sqs_queue_url="", prefix="raw/iot/",
                                   wait_time_seconds=0, visibility_timeout=30)

    shared = make() if reuse else None

    def poke(url: str) -> bool:
        sensor = shared or make()
        sensor.sqs_queue_url = url
        context: Any = {"ti": _TI(), "task_state_store": _StateStore()}
        result = sensor.poke(context)
        if result is False or result is True:
            return False
        sensor.hand_on(context, list(result.xcom_value or []), sensor._matched)
        return True

    return poke


def amazon_poker(reuse: bool, receives: int) -> Callable[[str], bool]:
    """Poke a SqsSensor filtering on the marker's key (fresh per poke, or one instance)."""
    from airflow.providers.amazon.aws.sensors.sqs import SqsSensor

    def make() -> SqsSensor:
        return SqsSensor(
            task_id="amazon", sqs_queue="", max_messages=10, num_batches=receives, wait_time_seconds=0,
            visibility_timeout=30, message_filtering="jsonpath",
            message_filtering_config="Records[*].s3.object.key",
            message_filtering_match_values=[ENCODED_MARKER_KEY],
        )

    shared = make() if reuse else None

    def poke(url: str) -> bool:
        sensor = shared or make()
        sensor.sqs_queue = url
        context: Any = {"ti": _TI()}
        return bool(sensor.poke(context))

    return poke


def run_scenario(sqs: Any, name: str, bodies: list[str], reuse: bool, rounds: int,
                 memory_rounds: int) -> dict[str, Measured]:
    receives = max(1, math.ceil(len(bodies) / 10))
    expect_found = bool(bodies)
    sides = {"ours": ours_poker(reuse), "amazon": amazon_poker(reuse, receives)}
    results = {side: Measured() for side in sides}
    queue_no = 0

    def queue() -> str:
        nonlocal queue_no
        queue_no += 1
        return fill_queue(sqs, f"bench-{'poke' if reuse else 'resched'}-{name.replace('+', '-')}-{queue_no}",
                          bodies)

    def check(side: str, found: bool) -> None:
        if found != expect_found:
            raise RuntimeError(f"{side} poke in scenario {name!r} returned found={found}")

    # Warm-up, not counted: imports, botocore's model files, JSONPath parsing tables; in poke mode
    # also the client amazon's sensor keeps.
    for side, poke in sides.items():
        check(side, poke(queue()))
    for round_no in range(max(rounds, memory_rounds)):
        order = list(sides) if round_no % 2 == 0 else list(reversed(sides))
        if round_no < rounds:
            for side in order:
                found, seconds = timed(partial(sides[side], queue()))
                results[side].seconds.append(seconds)
                check(side, found)
        if round_no < memory_rounds:
            for side in reversed(order):
                url = queue()
                found, peak = measure_peak(partial(sides[side], url))
                results[side].peak_bytes.append(peak)
                check(side, found)
    return results


def client_cost(rounds: int) -> Measured:
    """What building one boto3 SQS client through ``SqsHook`` costs (a reference for the figures)."""
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

    m = Measured()
    SqsHook().get_conn()
    for _ in range(rounds):
        m.seconds.append(timed(lambda: SqsHook().get_conn())[1])
    for _ in range(2):
        m.peak_bytes.append(measure_peak(lambda: SqsHook().get_conn())[1])
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--unrelated", type=int, default=50, help="unrelated events before the marker")
    parser.add_argument("--rounds", type=int, default=5, help="timed pokes per side, scenario and mode")
    parser.add_argument("--memory-rounds", type=int, default=2,
                        help="traced pokes per side, scenario and mode (peaks vary by a few KiB only)")
    args = parser.parse_args()

    scenarios = {
        "empty": [],
        "marker": unrelated_and_marker(0, MARKER_KEY),
        f"{args.unrelated}+marker": unrelated_and_marker(args.unrelated, MARKER_KEY),
    }
    modes = {"reschedule": False, "poke": True}
    started = time.monotonic()
    with moto_server() as server:
        sqs = server.client("sqs")
        client = client_cost(args.rounds)
        measured = {
            (mode, name): run_scenario(sqs, name, bodies, reuse, args.rounds, args.memory_rounds)
            for mode, reuse in modes.items()
            for name, bodies in scenarios.items()
        }
    elapsed = time.monotonic() - started

    print(f"{args.rounds} timed + {args.memory_rounds} traced pokes per side, scenario and mode; "
          f"ABBA order; all measured within {elapsed:.0f} s")
    print("reschedule = fresh sensor per poke; poke = one sensor instance for all pokes")
    header = (f"{'mode':<10} {'scenario':<10} {'side':<7} {'time median':>12} {'time p95':>10} "
              f"{'peak mem median':>16} {'peak mem max':>13}")
    print(header)
    print("-" * len(header))
    for (mode, name), results in measured.items():
        for side, m in results.items():
            t_med, t_p95 = median_p95(m.seconds)
            b_med = median_p95([float(b) for b in m.peak_bytes])[0]
            print(f"{mode:<10} {name:<10} {side:<7} {fmt_ms(t_med):>12} {fmt_ms(t_p95):>10} "
                  f"{fmt_kib(b_med):>16} {fmt_kib(max(m.peak_bytes)):>13}")
    c_med, c_p95 = median_p95(client.seconds)
    print(f"reference: one SqsHook().get_conn() (boto3 SQS client) {fmt_ms(c_med)} median, "
          f"{fmt_ms(c_p95)} p95, peak {fmt_kib(max(client.peak_bytes))}")
    print()
    print(f"{'mode':<10} {'scenario':<10} {'time ours/amazon':>17} {'memory ours/amazon':>19}")
    for (mode, name), results in measured.items():
        ours, amazon = results["ours"], results["amazon"]
        t = ratio(median_p95(ours.seconds)[0], median_p95(amazon.seconds)[0])
        b = ratio(median_p95([float(x) for x in ours.peak_bytes])[0],
                  median_p95([float(x) for x in amazon.peak_bytes])[0])
        print(f"{mode:<10} {name:<10} {t:>17} {b:>19}")


if __name__ == "__main__":
    main()
