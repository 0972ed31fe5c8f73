"""S3SuccessFileSensor on a real Airflow (dag.test) against a moto server: poke, reschedule, deferrable."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from airflow_provider_sparkflows.s3_events import BatchFilter
from tests.conftest import ROOT, wait_until
from tests.s3_events_helpers import counts, drain, make_queue, notify_queue, s3_event_body, send_all

DAG_FILE = ROOT / "tests" / "dags" / "s3_sensor_dags.py"
TRICKY_FOLDER = "raw/with space/a+b/100%/ünï 日本/deep/er/2024-05-01"


def _load_dags() -> Any:
    spec = importlib.util.spec_from_file_location("s3_sensor_dags", DAG_FILE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DAGS = _load_dags()


def run_dag(dag: Any, logical_date: datetime.datetime | None = None, **conf: Any) -> tuple[dict, Any]:
    """dag.test() the DAG; return {task_id(map_index): state} and the DagRun."""
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    kwargs: dict[str, Any] = {"run_conf": conf}
    if logical_date is not None:
        kwargs["logical_date"] = logical_date
    dr = dag.test(**kwargs)
    with create_session() as session:
        tis = session.query(TaskInstance).filter_by(dag_id=dag.dag_id, run_id=dr.run_id).all()
        states = {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): str(ti.state)
                  for ti in tis}
    return states, dr


def xcom(dag_id: str, run_id: str, task_id: str = "wait", key: str = "return_value") -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key=key,
                                                 map_index=-1).one_or_none()
        if row is None:
            return None
        return json.loads(row.value) if isinstance(row.value, str) else row.value


def test_modules_do_not_import_boto_at_import_time() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_sparkflows.sensors.s3_success_file\n"
        "import airflow_provider_sparkflows.triggers.s3_success_file\n"
        "banned = ('boto3', 'aiobotocore', 'requests', 'aiohttp')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_poke_real_upload_tricky_key_hands_on_and_deletes(moto: Any) -> None:
    s3, sqs = moto.client("s3"), moto.client("sqs")
    url, _ = make_queue(sqs, "events")
    notify_queue(s3, sqs, "landing", url)  # moto also sends an s3:TestEvent here
    for name in ("part-0.parquet", "part 1+x.parquet", "_SUCCESS"):
        s3.put_object(Bucket="landing", Key=f"{TRICKY_FOLDER}/{name}", Body=b"x")
    assert counts(sqs, url) == (4, 0)

    states, dr = run_dag(DAGS.dag_poke, queue_url=url)

    assert states == {"wait": "success", "consume[0]": "success"}
    (batch,) = xcom("s3_sensor_poke", dr.run_id)
    assert batch["bucket"] == "landing"
    assert batch["prefix"] == f"{TRICKY_FOLDER}/"
    assert batch["uri"] == f"s3://landing/{TRICKY_FOLDER}/"
    assert batch["key"] == f"{TRICKY_FOLDER}/_SUCCESS"
    assert batch["message_id"] and batch["etag"] and batch["size"] == 1 and batch["event_time"]
    assert xcom("s3_sensor_poke", dr.run_id, task_id="consume") is None  # mapped: map_index 0
    # marker message and test event deleted; the two data-file events are visible again at once
    assert counts(sqs, url) == (2, 0)
    left = drain(sqs, url)
    assert all("part" in json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in left)


def test_hundreds_of_unrelated_messages_and_one_marker(moto: Any) -> None:
    from airflow_provider_sparkflows.sensors.s3_success_file import S3SuccessFileSensor

    sqs = moto.client("sqs")
    url, _ = make_queue(sqs, "busy")
    unrelated = [s3_event_body("landing", f"raw/x/{i}/part-{i}") for i in range(100)]
    unrelated += [s3_event_body("other-bucket", f"raw/y/{i}/_SUCCESS") for i in range(60)]
    unrelated += [s3_event_body("landing", f"web/{i}/_SUCCESS") for i in range(40)]
    ids = send_all(sqs, url, [*unrelated[:150], s3_event_body("landing", "raw/iot/2024-05-01/_SUCCESS"),
                              *unrelated[150:]])
    marker_id = ids[150]
    sensor = S3SuccessFileSensor(task_id="t", sqs_queue_url=url, bucket="landing", prefix="raw/iot/",
                                 wait_time_seconds=0, visibility_timeout=30)

    result = sensor.poke({})  # type: ignore[arg-type]

    assert result
    assert [b["uri"] for b in result.xcom_value] == ["s3://landing/raw/iot/2024-05-01/"]  # type: ignore[union-attr]
    assert [m["Id"] for m in sensor._matched] == [marker_id]
    # Only the marker is hidden (awaiting hand-on); all 200 others are visible again and untouched.
    assert counts(sqs, url) == (200, 1)
    left = drain(sqs, url)
    assert sorted(m["MessageId"] for m in left) == sorted(i for i in ids if i != marker_id)


def test_two_sensors_one_queue_different_batch_prefix(moto: Any) -> None:
    s3, sqs = moto.client("s3"), moto.client("sqs")
    url, _ = make_queue(sqs, "shared")
    s3.create_bucket(Bucket="landing")  # markers are announced but not in S3: both must use the queue
    send_all(sqs, url, [
        s3_event_body("landing", "raw/b/_SUCCESS"),
        s3_event_body("landing", "raw/noise/_SUCCESS"),
        s3_event_body("landing", "raw/a/_SUCCESS"),
    ])

    states, dr = run_dag(DAGS.dag_two_folders, queue_url=url, folder_a="raw/a/", folder_b="raw/b/")

    assert states == {"wait_a": "success", "wait_b": "success"}
    assert [b["uri"] for b in xcom(dr.dag_id, dr.run_id, "wait_a")] == ["s3://landing/raw/a/"]
    assert [b["uri"] for b in xcom(dr.dag_id, dr.run_id, "wait_b")] == ["s3://landing/raw/b/"]
    assert counts(sqs, url) == (1, 0)  # the noise is still there, visible


def test_two_sensors_polling_concurrently_neither_steals(moto: Any) -> None:
    from airflow_provider_sparkflows.sensors.s3_success_file import S3SuccessFileSensor

    sqs = moto.client("sqs")
    url, _ = make_queue(sqs, "race")
    sensors = {
        folder: S3SuccessFileSensor(task_id=f"t{folder[-2]}", sqs_queue_url=url, bucket="landing",
                                    batch_prefix=folder, wait_time_seconds=0, visibility_timeout=30)
        for folder in ("raw/a/", "raw/b/")
    }
    moto.client("s3").create_bucket(Bucket="landing")  # no markers in S3: both must use the queue
    send_all(sqs, url, [s3_event_body("landing", f"raw/n{i}/_SUCCESS") for i in range(40)])
    results: dict[str, list] = {}

    def poll(folder: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            result = sensors[folder].poke({})  # type: ignore[arg-type]
            if result:
                results[folder] = result.xcom_value  # type: ignore[union-attr]
                return

    threads = [threading.Thread(target=poll, args=(f,)) for f in sensors]
    for thread in threads:
        thread.start()
    send_all(sqs, url, [s3_event_body("landing", f"raw/{x}/_SUCCESS") for x in "ab"])
    for thread in threads:
        thread.join(40)
    assert {f: [b["uri"] for b in r] for f, r in results.items()} == {
        "raw/a/": ["s3://landing/raw/a/"], "raw/b/": ["s3://landing/raw/b/"]
    }
    assert counts(sqs, url) == (40, 2)  # noise visible; each sensor holds exactly its own marker


def test_reschedule_mode_leaves_nothing_hidden_between_pokes(moto: Any) -> None:
    from airflow.models import TaskInstance
    from airflow.utils.session import create_session

    s3, sqs = moto.client("s3"), moto.client("sqs")
    url, _ = make_queue(sqs, "resched")
    notify_queue(s3, sqs, "landing", url)
    s3.put_object(Bucket="landing", Key="raw/r/part-0", Body=b"x")
    seen: dict[str, Any] = {}

    def upload_when_rescheduled() -> None:
        def rescheduled() -> bool:
            with create_session() as session:
                query = session.query(TaskInstance).filter_by(dag_id="s3_sensor_reschedule", task_id="wait")
                ti = query.order_by(TaskInstance.start_date.desc()).first()
                return ti is not None and str(ti.state) == "up_for_reschedule"
        wait_until(rescheduled, timeout=60, message="sensor up for reschedule")
        seen["between_pokes"] = counts(sqs, url)
        s3.put_object(Bucket="landing", Key="raw/r/_SUCCESS", Body=b"")

    uploader = threading.Thread(target=upload_when_rescheduled)
    uploader.start()
    states, dr = run_dag(DAGS.dag_reschedule, queue_url=url)
    uploader.join(5)

    assert seen["between_pokes"] == (1, 0)  # the data-file event: visible, not hidden, between pokes
    assert states == {"wait": "success", "consume[0]": "success"}
    assert [b["uri"] for b in xcom(dr.dag_id, dr.run_id)] == ["s3://landing/raw/r/"]
    assert counts(sqs, url) == (1, 0)


def test_deferrable_hands_on_then_deletes(moto: Any) -> None:
    s3, sqs = moto.client("s3"), moto.client("sqs")
    url, _ = make_queue(sqs, "deferred")
    notify_queue(s3, sqs, "landing", url)
    for folder in ("raw/d1", "raw/d 2", "web/ignored"):
        s3.put_object(Bucket="landing", Key=f"{folder}/_SUCCESS", Body=b"")
    s3.put_object(Bucket="landing", Key="raw/d1/_SUCCESS", Body=b"again")  # a second event, same batch

    states, dr = run_dag(DAGS.dag_deferrable, queue_url=url)

    assert states == {"wait": "success", "consume[0]": "success", "consume[1]": "success"}
    assert sorted(b["uri"] for b in xcom(dr.dag_id, dr.run_id)) == ["s3://landing/raw/d 2/", "s3://landing/raw/d1/"]
    assert counts(sqs, url) == (1, 0)  # only web/ignored is left, visible


def test_deferrable_timeout_with_soft_fail_skips(moto: Any) -> None:
    sqs = moto.client("sqs")
    url, _ = make_queue(sqs, "quiet")
    started = time.monotonic()
    states, _ = run_dag(DAGS.dag_deferrable_soft_fail, queue_url=url)
    assert states["wait"] == "skipped"
    assert time.monotonic() - started < 30


def test_backfill_marker_in_s3_completes_without_sqs(moto: Any) -> None:
    s3, sqs = moto.client("s3"), moto.client("sqs")
    s3.create_bucket(Bucket="landing")
    url, _ = make_queue(sqs, "backfill")
    for day in ("2024-03-01", "2024-03-02"):
        s3.put_object(Bucket="landing", Key=f"raw/iot/{day}/_SUCCESS", Body=b"ok")
    (event_id,) = send_all(sqs, url, [s3_event_body("landing", "raw/iot/2024-03-01/_SUCCESS")])
    missing_queue = url.rsplit("/", 1)[0] + "/no-such-queue"  # any SQS call would fail the task

    for day, queue in ((1, url), (2, missing_queue)):
        logical_date = datetime.datetime(2024, 3, day, tzinfo=datetime.timezone.utc)
        states, dr = run_dag(DAGS.dag_backfill, logical_date=logical_date, queue_url=queue)
        assert states == {"wait": "success"}
        (batch,) = xcom(dr.dag_id, dr.run_id)
        assert batch["uri"] == f"s3://landing/raw/iot/2024-03-0{day}/"
        assert batch["message_id"] is None and batch["size"] == 2

    # The event for 2024-03-01 was never received by the sensor: its first receive is ours.
    (message,) = drain(sqs, url)
    assert message["MessageId"] == event_id
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"


KILLED_POKE = """
import json, os, sys, time
from airflow_provider_sparkflows.sensors.s3_success_file import S3SuccessFileSensor
sensor = S3SuccessFileSensor(task_id="t", sqs_queue_url=sys.argv[1], bucket="landing", prefix="raw/",
                             wait_time_seconds=0, visibility_timeout=int(sys.argv[2]))
result = sensor.poke({})
print("RESULT " + json.dumps(result.xcom_value if result else None), flush=True)
time.sleep(600)  # a worker dying between receiving and handing on
"""


def test_killed_after_receive_is_received_again_and_processed(moto: Any) -> None:
    s3, sqs = moto.client("s3"), moto.client("sqs")
    url, _ = make_queue(sqs, "killed")
    notify_queue(s3, sqs, "landing", url)
    s3.put_object(Bucket="landing", Key="raw/k/_SUCCESS", Body=b"")
    visibility = DAGS.VISIBILITY_TIMEOUT
    proc = subprocess.Popen([sys.executable, "-c", KILLED_POKE, url, str(visibility)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        line = ""
        while not line.startswith("RESULT "):  # the sensor's own log lines come first
            line = proc.stdout.readline()  # type: ignore[union-attr]
            assert line, "the poking subprocess exited early"
        assert json.loads(line[len("RESULT "):])[0]["uri"] == "s3://landing/raw/k/"
        received_at = time.monotonic()
        assert counts(sqs, url) == (0, 1)  # hidden by the killed consumer, not deleted
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    states, dr = run_dag(DAGS.dag_poke, queue_url=url)

    assert time.monotonic() - received_at >= visibility - 0.5  # only after the visibility timeout
    assert states == {"wait": "success", "consume[0]": "success"}
    assert [b["uri"] for b in xcom(dr.dag_id, dr.run_id)] == ["s3://landing/raw/k/"]
    assert counts(sqs, url) == (0, 0)


def test_poison_message_goes_to_dlq_and_does_not_block(moto: Any) -> None:
    from airflow_provider_sparkflows.sensors.s3_success_file import S3SuccessFileSensor

    sqs = moto.client("sqs")
    url, dlq = make_queue(sqs, "poison", max_receives=3)
    (poison_id, marker_id) = send_all(sqs, url, ["{not json", s3_event_body("landing", "raw/p/_SUCCESS")])
    sensor = S3SuccessFileSensor(task_id="t", sqs_queue_url=url, prefix="raw/p/", wait_time_seconds=0,
                                 visibility_timeout=30)

    result = sensor.poke({})  # type: ignore[arg-type]
    assert result and [b["message_id"] for b in result.xcom_value] == [marker_id]  # type: ignore[union-attr]
    assert sensor._logged_unrecognised == {poison_id}

    other = S3SuccessFileSensor(task_id="t2", sqs_queue_url=url, prefix="raw/never/", wait_time_seconds=0,
                                visibility_timeout=30)
    wait_until(lambda: not other.poke({}) and counts(sqs, dlq)[0] == 1,  # type: ignore[arg-type]
               timeout=20, message="poison message in the dead-letter queue")
    (dead,) = drain(sqs, dlq)
    assert dead["MessageId"] == poison_id
    assert counts(sqs, url) == (0, 1)  # only the marker, held by the first sensor


def test_batch_filter_matches_what_the_sensor_uses() -> None:
    from airflow_provider_sparkflows.sensors.s3_success_file import S3SuccessFileSensor

    sensor = S3SuccessFileSensor(task_id="t", sqs_queue_url="u", bucket="b", prefix="p/", batch_prefix="p/x",
                                 success_file_name="_DONE")
    expected = BatchFilter(bucket="b", prefix="p/", batch_prefix="p/x", success_file_name="_DONE")
    assert sensor.batch_filter == expected
    with pytest.raises(ValueError, match="batch_prefix needs bucket"):
        S3SuccessFileSensor(task_id="t", sqs_queue_url="u", batch_prefix="p/")
    with pytest.raises(ValueError, match="wait_time_seconds"):
        S3SuccessFileSensor(task_id="t", sqs_queue_url="u", wait_time_seconds=21)
