"""Shared parts of the benchmarks: a moto server subprocess, queues of S3 events, peak memory, statistics.

Not a test helper: nothing here asserts. Importing it puts the repository root on ``sys.path`` (so the
scripts run as ``.venv/bin/python benchmarks/x.py``) and sets dummy AWS credentials and a throwaway
``AIRFLOW_HOME`` before Airflow is imported.
"""

from __future__ import annotations

import gc
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import tracemalloc
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
REGION = "us-east-1"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
# Keep Airflow from writing a config into ~/airflow; the benchmarks need no metadata database.
os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow" / "bench"))
# INFO lines of sensors, hooks and triggers would flood the output; both sides are quieted alike.
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

# Re-exported for the scripts; E402: importable only once ROOT is on sys.path.
from tests.s3_events_helpers import s3_event_body as s3_event_body  # noqa: E402
from tests.s3_events_helpers import send_all  # noqa: E402

T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MotoServer:
    """
    A ``python -m moto.server`` subprocess on 127.0.0.1.

    :param startup_timeout: Seconds to wait for the server to answer before giving up.
    """

    def __init__(self, startup_timeout: float = 60.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + self.startup_timeout
        while not self._ready():
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server on {self.url} exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server on {self.url} not ready after {self.startup_timeout}s")
            time.sleep(0.05)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)
        self._proc = None

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` on this server."""
        import boto3

        return boto3.client(service, endpoint_url=self.url, region_name=REGION)


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start a moto server, point the ``aws_default`` connection at it, stop it on exit."""
    server = MotoServer()
    server.start()
    previous = os.environ.get("AIRFLOW_CONN_AWS_DEFAULT")
    os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
        {"conn_type": "aws", "extra": {"endpoint_url": server.url, "region_name": REGION}}
    )
    try:
        yield server
    finally:
        if previous is None:
            os.environ.pop("AIRFLOW_CONN_AWS_DEFAULT", None)
        else:
            os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = previous
        server.stop()


def fill_queue(sqs: Any, name: str, bodies: Sequence[str], visibility: int = 30) -> str:
    """Create queue ``name`` holding ``bodies`` (in this order); return its URL."""
    url: str = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(visibility)})["QueueUrl"]
    if bodies:
        send_all(sqs, url, list(bodies))
    return url


def unrelated_and_marker(unrelated: int, marker_key: str, bucket: str = "landing") -> list[str]:
    """``unrelated`` S3 events for data files, then one for the ``_SUCCESS`` marker ``marker_key``."""
    bodies = [s3_event_body(bucket, f"raw/other/{i}/part-{i:05d}.parquet") for i in range(unrelated)]
    bodies.append(s3_event_body(bucket, marker_key))
    return bodies


class Measured:
    """Samples of one side: wall seconds and peak allocated bytes."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.peak_bytes: list[int] = []


def _settle_gc() -> None:
    # Every sample starts from the same GC state, and what survived so far (Airflow's and botocore's
    # import-time objects, mostly) is frozen, so neither the collection here nor one triggered during
    # the sample walks that heap again: otherwise a sample may or may not pay a 100+ ms full collection.
    gc.collect()
    gc.freeze()


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    """Run ``fn`` from a settled GC state; return its result and wall seconds."""
    _settle_gc()
    started = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - started


def measure_peak(fn: Callable[[], T]) -> tuple[T, int]:
    """Run ``fn`` with tracemalloc on; return its result and the peak bytes allocated meanwhile."""
    _settle_gc()
    tracemalloc.start()
    try:
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


@contextmanager
def traced_peak(out: list[int]) -> Iterator[None]:
    """tracemalloc around a block (for async code); appends the peak bytes to ``out``."""
    _settle_gc()
    tracemalloc.start()
    try:
        yield
        out.append(tracemalloc.get_traced_memory()[1])
    finally:
        tracemalloc.stop()


def median_p95(values: Sequence[float]) -> tuple[float, float]:
    """Median and nearest-rank 95th percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return statistics.median(ordered), ordered[rank - 1]


def ratio(ours: float, amazon: float) -> str:
    return f"{ours / amazon:.2f}" if amazon else "n/a"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def fmt_kib(size: float) -> str:
    return f"{size / 1024:.0f} KiB"
