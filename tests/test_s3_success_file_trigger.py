"""S3SuccessFileTrigger against a moto server through aiobotocore: deferred-task use and AssetWatcher use.

The AssetWatcher tests drive Airflow's own SharedStreamManager (the triggerer's ack-mode machinery), so
the "delete only after the events were persisted" rule is checked against the real bookkeeping.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from airflow_provider_sparkflows.triggers.s3_success_file import S3SuccessFileTrigger
from tests.s3_events_helpers import counts, drain, make_queue, s3_event_body, send_all


def trigger(url: str, **kwargs: Any) -> S3SuccessFileTrigger:
    return S3SuccessFileTrigger(sqs_queue_url=url, wait_time_seconds=0, visibility_timeout=30,
                                poll_interval=0.05, **kwargs)


async def wait_for(condition: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.05)


def test_serialize_is_json_safe_and_round_trips() -> None:
    t = trigger("http://q", bucket="b", prefix="raw/", batch_prefix="raw/x/", max_batches=3,
                deferred_task=True, deadline=123.5)
    classpath, kwargs = t.serialize()
    assert classpath == "airflow_provider_sparkflows.triggers.s3_success_file.S3SuccessFileTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert S3SuccessFileTrigger(**kwargs).serialize() == (classpath, kwargs)
    assert t.shared_stream_key() is None  # a deferred task never joins an ack-mode stream
    assert trigger("http://q").shared_stream_key() == trigger("http://q").shared_stream_key() is not None
    assert trigger("http://q").shared_stream_key() != trigger("http://q", prefix="x/").shared_stream_key()


async def test_deferred_task_event_carries_batches_and_receipts_deletes_nothing(moto: Any) -> None:
    sqs = moto.client("sqs")
    url, _ = make_queue(sqs, "t1")
    ids = send_all(sqs, url, [
        s3_event_body("landing", "raw/a/_SUCCESS", "raw/b b/_SUCCESS"),  # two records, one message
        s3_event_body("landing", "raw/a/_SUCCESS"),  # S3 delivering twice
        s3_event_body("landing", "raw/a/part-0"),
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "landing"}),
    ])
    t = trigger(url, bucket="landing", deferred_task=True)

    event = await asyncio.wait_for(anext(t.run()), 20)

    assert event.payload["status"] == "success"
    assert [b["uri"] for b in event.payload["batches"]] == ["s3://landing/raw/a/", "s3://landing/raw/b b/"]
    assert sorted(r["id"] for r in event.payload["receipts"]) == sorted(ids[:2])
    assert json.loads(json.dumps(event.payload)) == event.payload
    # matched: hidden until the task deletes them; data file: visible again; test event: deleted
    assert await asyncio.to_thread(counts, sqs, url) == (1, 2)


async def test_deferred_task_timeout_and_error_events(moto: Any) -> None:
    sqs = moto.client("sqs")
    url, _ = make_queue(sqs, "t2")
    started = time.monotonic()
    soon = trigger(url, deferred_task=True, deadline=time.time() + 0.5)
    event = await asyncio.wait_for(anext(soon.run()), 10)
    assert event.payload["status"] == "timeout"
    assert time.monotonic() - started < 5

    missing = url.rsplit("/", 1)[0] + "/missing"
    event = await asyncio.wait_for(anext(trigger(missing, deferred_task=True).run()), 10)
    assert event.payload["status"] == "error"
    assert missing in event.payload["message"] and "aws_default" in event.payload["message"]


async def test_watcher_run_yields_one_event_per_batch(moto: Any) -> None:
    sqs = moto.client("sqs")
    url, _ = make_queue(sqs, "t3")
    send_all(sqs, url, [s3_event_body("landing", "raw/1/_SUCCESS", "raw/2/_SUCCESS"),
                        s3_event_body("landing", "raw/3/_SUCCESS"), s3_event_body("landing", "raw/x/part")])
    events = trigger(url, prefix="raw/").run()

    payloads = [(await asyncio.wait_for(anext(events), 20)).payload for _ in range(3)]

    assert [p["uri"] for p in payloads] == ["s3://landing/raw/1/", "s3://landing/raw/2/", "s3://landing/raw/3/"]
    assert set(payloads[0]) == {"bucket", "prefix", "uri", "key", "event_time", "etag", "size", "message_id"}
    assert await asyncio.to_thread(counts, sqs, url) == (1, 2)  # not deleted before the next pull
    pending = asyncio.ensure_future(anext(events))
    await wait_for(lambda: sum(counts(sqs, url)) == 1, 10, "the two matched messages deleted")
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending


def test_asset_watcher_accepts_the_trigger() -> None:
    from airflow.sdk import Asset, AssetWatcher

    t = trigger("http://q", bucket="landing", prefix="raw/iot/")
    watcher = AssetWatcher(name="sqs", trigger=t)
    asset = Asset(name="iot_batches", uri="s3://landing/raw/iot/", watchers=[watcher])
    assert asset.watchers[0].trigger is t
    with pytest.raises(ValueError, match="BaseEventTrigger"):
        AssetWatcher(name="x", trigger=object())  # type: ignore[arg-type]


async def _subscribe(t: S3SuccessFileTrigger, ack_timeout: float) -> tuple[Any, Any, Any]:
    from airflow.triggers.shared_stream import SharedStreamManager

    manager = SharedStreamManager(ack_timeout=ack_timeout)
    key = t.shared_stream_key()
    events = t.filter_shared_stream(manager.subscribe(trigger_id=1, trigger=t, key=key))
    return manager, key, events


async def test_watcher_ack_mode_deletes_only_after_persist_confirmation(moto: Any) -> None:
    sqs = moto.client("sqs")
    url, _ = make_queue(sqs, "t4")
    send_all(sqs, url, [s3_event_body("landing", "raw/1/_SUCCESS", "raw/2/_SUCCESS")])
    t = trigger(url, prefix="raw/")
    manager, key, events = await _subscribe(t, ack_timeout=30)
    try:
        seqs = []
        for expected in ("s3://landing/raw/1/", "s3://landing/raw/2/"):
            event = await asyncio.wait_for(anext(events), 20)
            assert event.payload["uri"] == expected
            seqs.append(manager.bind_pending_event(trigger_id=1, key=key))  # as the triggerer does
        assert None not in seqs
        nxt = asyncio.ensure_future(anext(events))  # moving on closes the binding window
        await asyncio.sleep(0.5)
        assert await asyncio.to_thread(counts, sqs, url) == (0, 1)  # not persisted yet: still held
        manager.confirm_persisted(seqs[:1])
        await asyncio.sleep(0.3)
        assert await asyncio.to_thread(counts, sqs, url) == (0, 1)  # one of two events persisted: held
        manager.confirm_persisted(seqs[1:])
        await wait_for(lambda: counts(sqs, url) == (0, 0), 10, "message deleted after both persisted")
        nxt.cancel()
    finally:
        await manager.unsubscribe(1, key)


async def test_watcher_ack_mode_releases_when_never_persisted(moto: Any) -> None:
    sqs = moto.client("sqs")
    url, _ = make_queue(sqs, "t5")
    (message_id,) = send_all(sqs, url, [s3_event_body("landing", "raw/9/_SUCCESS")])
    t = trigger(url)
    manager, key, events = await _subscribe(t, ack_timeout=1.0)
    try:
        await asyncio.wait_for(anext(events), 20)
        manager.bind_pending_event(trigger_id=1, key=key)  # ... and the persist confirmation never comes
        with pytest.raises(Exception, match="did not finish processing"):
            await asyncio.wait_for(anext(events), 20)
        # made visible again at once (not after the 30 s visibility timeout), not deleted
        await wait_for(lambda: counts(sqs, url)[0] == 1, 10, "message visible again")
    finally:
        await manager.unsubscribe(1, key)
    (again,) = await asyncio.to_thread(drain, sqs, url)
    assert again["MessageId"] == message_id
