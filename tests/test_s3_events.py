"""The pure S3-event parsing module: formats, key decoding, filters, the receive-round fold, retries."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any
from urllib.parse import quote, quote_plus

from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_sparkflows.s3_events import (
    MAX_RECEIVE_CALLS,
    BatchCallRun,
    BatchFilter,
    MessageRef,
    ReceiveScan,
    call_entries,
    normalize_folder,
    parse_message,
    plan_batch_calls,
    refs_from_receipts,
)
from tests.s3_events_helpers import s3_body, s3_record


def sns_envelope(inner: str) -> str:
    return json.dumps({
        "Type": "Notification",
        "MessageId": "sns-1",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:t",
        "Message": inner,
        "Timestamp": "2024-05-01T10:00:00.000Z",
    })


def eventbridge_body(bucket: str, key: str, detail_type: str = "Object Created") -> str:
    return json.dumps({
        "version": "0",
        "id": "eb-1",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2024-05-01T10:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": 7, "etag": "abc"},
            "reason": "PutObject",
        },
    })


TRICKY_KEYS = [
    "raw/iot/2024-05-01/_SUCCESS",
    "raw/with space/2024 05 01/_SUCCESS",
    "raw/plus+sign/a+b/_SUCCESS",
    "raw/percent%20literal/100%/_SUCCESS",
    "raw/ünïcødé/日本語/😀/_SUCCESS",
    "a/b/c/d/e/f/g/h/i/j/k/_SUCCESS",
    "_SUCCESS",
]


def test_module_imports_nothing_from_airflow_or_boto() -> None:
    code = (
        "import sys, airflow_provider_sparkflows.s3_events as m; "
        "bad=[n for n in ('airflow.models', 'airflow.sdk', 'boto3', 'botocore', 'aiobotocore') "
        "if n in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_s3_native_decodes_keys_the_way_s3_encodes_them() -> None:
    for key in TRICKY_KEYS:
        parsed = parse_message(s3_body(s3_record("bkt", key)), "m1")
        assert parsed.kind == "events", parsed
        assert [e.key for e in parsed.events] == [key]
        batch = BatchFilter().batch_for(parsed.events[0], "m1")
        assert batch is not None
        folder = key.rpartition("/")[0]
        assert batch["prefix"] == (folder + "/" if folder else "")
        assert batch["uri"] == f"s3://bkt/{batch['prefix']}"
        assert batch["key"] == key
        assert json.loads(json.dumps(batch)) == batch


def test_plus_means_space_and_percent_2b_means_plus() -> None:
    body = s3_body(s3_record("b", "x/a+b%2Bc/_SUCCESS", encode=False))
    assert parse_message(body, "m").events[0].key == "x/a b+c/_SUCCESS"


def test_several_records_in_one_message_and_only_object_created_counts() -> None:
    body = s3_body(
        s3_record("b", "f1/_SUCCESS"),
        s3_record("b", "f2/_SUCCESS", event_name="ObjectRemoved:Delete"),
        s3_record("b", "f3/_SUCCESS", event_name="ObjectCreated:CompleteMultipartUpload"),
    )
    parsed = parse_message(body, "m")
    assert parsed.kind == "events"
    assert [e.key for e in parsed.events] == ["f1/_SUCCESS", "f3/_SUCCESS"]
    assert parsed.events[0].etag == "d41d8cd98f00b204e9800998ecf8427e"
    assert parsed.events[0].event_time == "2024-05-01T10:00:00.000Z"


def test_sns_envelope_raw_off_and_on() -> None:
    inner = s3_body(s3_record("b", "with space/_SUCCESS"))
    off = parse_message(sns_envelope(inner), "m")
    on = parse_message(inner, "m")  # raw delivery: SQS body is the S3 event itself
    assert off.events == on.events
    assert off.events[0].key == "with space/_SUCCESS"
    test_in_sns = parse_message(sns_envelope(json.dumps({"Event": "s3:TestEvent", "Bucket": "b"})), "m")
    assert test_in_sns.kind == "test_event"


def test_eventbridge_key_is_not_url_decoded() -> None:
    parsed = parse_message(eventbridge_body("b", "a+b/100%25/with space/_SUCCESS"), "m")
    assert parsed.kind == "events"
    assert parsed.events[0].key == "a+b/100%25/with space/_SUCCESS"
    assert parsed.events[0].size == 7
    assert parsed.events[0].event_time == "2024-05-01T10:00:00Z"
    deleted = parse_message(eventbridge_body("b", "a/_SUCCESS", "Object Deleted"), "m")
    assert deleted.kind == "events" and deleted.events == ()


def test_test_event_is_recognised_and_yields_nothing() -> None:
    body = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "x", "Bucket": "b"})
    parsed = parse_message(body, "m")
    assert parsed.kind == "test_event" and parsed.events == ()


def test_unrecognised_shapes_are_classified_with_a_reason() -> None:
    cases: list[Any] = [
        "not json",
        "",
        "[1, 2]",
        "null",
        json.dumps({"hello": "world"}),
        json.dumps({"Records": []}),
        json.dumps({"Records": "x"}),
        json.dumps({"Records": [{"eventSource": "aws:sqs", "eventVersion": "2.1"}]}),
        json.dumps({"Records": [{"eventSource": "aws:s3", "eventVersion": "1.0"}]}),
        json.dumps({"Records": [{"eventSource": "aws:s3", "eventVersion": "2.1", "s3": {}}]}),
        json.dumps({"Type": "Notification", "Message": "{not json"}),
        json.dumps({"Type": "Notification", "Message": 5}),
        json.dumps({"Type": "Notification", "Message": sns_envelope("{}")}),  # nested envelope
        json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": {}}),
        None,
        b"bytes",
    ]
    for body in cases:
        parsed = parse_message(body, "mid-7")
        assert parsed.kind == "unrecognised", body
        assert parsed.reason and parsed.message_id == "mid-7"


def test_filters() -> None:
    event = parse_message(s3_body(s3_record("b", "raw/iot/2024-05-01/_SUCCESS")), "m").events[0]
    assert BatchFilter(bucket="b").batch_for(event, "m")
    assert not BatchFilter(bucket="other").batch_for(event, "m")
    assert BatchFilter(prefix="raw/iot/").batch_for(event, "m")
    assert BatchFilter(prefix="/raw/iot/").batch_for(event, "m")
    assert not BatchFilter(prefix="raw/web/").batch_for(event, "m")
    assert BatchFilter(batch_prefix="raw/iot/2024-05-01").batch_for(event, "m")
    assert BatchFilter(batch_prefix="raw/iot/2024-05-01/").batch_for(event, "m")
    assert not BatchFilter(batch_prefix="raw/iot/").batch_for(event, "m")  # only that exact folder
    assert not BatchFilter(success_file_name="_DONE").batch_for(event, "m")
    data = parse_message(s3_body(s3_record("b", "raw/iot/2024-05-01/part-0.parquet")), "m").events[0]
    assert not BatchFilter().batch_for(data, "m")
    assert normalize_folder("/a/b") == "a/b/" and normalize_folder("") == ""


def msg(message_id: str, body: str, receipt: str | None = None) -> dict:
    return {"MessageId": message_id, "ReceiptHandle": receipt or f"rh-{message_id}", "Body": body}


def test_receive_scan_sorts_every_message() -> None:
    scan = ReceiveScan(BatchFilter(bucket="b", prefix="raw/"), max_batches=2)
    scan.add([
        msg("1", s3_body(s3_record("b", "raw/a/_SUCCESS"))),
        msg("2", s3_body(s3_record("b", "raw/a/_SUCCESS"))),  # duplicate delivery of the same batch
        msg("3", json.dumps({"Event": "s3:TestEvent"})),
        msg("4", "garbage"),
        msg("5", s3_body(s3_record("b", "other/x/_SUCCESS"))),  # unmatched
        msg("6", s3_body(s3_record("b", "raw/a/part-1"))),  # data file, not a marker
    ])
    assert not scan.full
    scan.add([
        msg("7", s3_body(s3_record("b", "raw/b/_SUCCESS"))),
        msg("8", s3_body(s3_record("b", "raw/c/_SUCCESS"))),  # beyond max_batches
        msg("1", s3_body(s3_record("b", "raw/a/_SUCCESS")), receipt="rh-1-again"),
    ])
    assert scan.full
    assert [b["uri"] for b in scan.batches] == ["s3://b/raw/a/", "s3://b/raw/b/"]
    assert [b["message_id"] for b in scan.batches] == ["1", "7"]
    assert scan.matched == [
        MessageRef(Id="1", ReceiptHandle="rh-1-again"),
        MessageRef(Id="2", ReceiptHandle="rh-2"),
        MessageRef(Id="7", ReceiptHandle="rh-7"),
    ]
    assert [r["Id"] for r in scan.release] == ["4", "5", "6", "8"]
    assert [r["Id"] for r in scan.delete_now] == ["3"]
    assert scan.unrecognised[0][0] == "4"
    assert scan.received == 8
    assert refs_from_receipts(scan.receipts()) == scan.matched


def test_receive_round_long_polls_once_and_ends_at_the_first_empty_answer() -> None:
    scan = ReceiveScan(BatchFilter())
    calls = []
    answers = [[msg("1", s3_body(s3_record("b", "a/part-0")))], []]
    for kwargs in scan.receive_calls("q", wait_time_seconds=20, visibility_timeout=60):
        calls.append(kwargs)
        scan.add_response({"Messages": answers[len(calls) - 1]} if answers[len(calls) - 1] else {})
    assert [c["WaitTimeSeconds"] for c in calls] == [20, 0]
    assert {c["VisibilityTimeout"] for c in calls} == {60}


def test_receive_round_ends_when_full_or_after_the_call_budget() -> None:
    full = ReceiveScan(BatchFilter(), max_batches=1)
    for _ in full.receive_calls("q", 0, 60):
        full.add_response({"Messages": [msg("1", s3_body(s3_record("b", "a/_SUCCESS")))]})
    assert full.received == 1

    busy = ReceiveScan(BatchFilter())
    for number, _ in enumerate(busy.receive_calls("q", 0, 60)):
        busy.add_response({"Messages": [msg(str(number), s3_body(s3_record("b", f"d/{number}")))]})
    assert busy.received == MAX_RECEIVE_CALLS


def test_unrecognised_messages_are_reported_once() -> None:
    logged: set[str] = set()
    first = ReceiveScan(BatchFilter())
    first.add([msg("p", "garbage")])
    assert [m for m, _ in first.unrecognised_not_in(logged)] == ["p"]
    again = ReceiveScan(BatchFilter())
    again.add([msg("p", "garbage"), msg("q", "{}")])
    assert [m for m, _ in again.unrecognised_not_in(logged)] == ["q"]


def test_receive_scan_delete_unmatched() -> None:
    scan = ReceiveScan(BatchFilter(batch_prefix="x/"), delete_unmatched=True)
    scan.add([msg("1", s3_body(s3_record("b", "y/_SUCCESS"))), msg("2", "garbage")])
    assert [r["Id"] for r in scan.delete_now] == ["1"]
    assert [r["Id"] for r in scan.release] == ["2"]  # unrecognised is never deleted


def test_plan_batch_calls_and_retries() -> None:
    refs = [MessageRef(Id=f"id/{i}", ReceiptHandle=f"r{i}") for i in range(23)]
    calls = plan_batch_calls(refs)
    assert [len(c) for c in calls] == [10, 10, 3]
    assert call_entries(calls[2], VisibilityTimeout=0)[0] == {
        "Id": "m20", "ReceiptHandle": "r20", "VisibilityTimeout": 0
    }

    run = BatchCallRun(refs[:12], attempts=3)
    attempt = 0
    while calls := run.next_calls():
        attempt += 1
        for call in calls:
            ids = list(call)
            if attempt == 1 and "m0" in call:
                run.record(call, {"Successful": [{"Id": i} for i in ids[2:]], "Failed": [
                    {"Id": ids[0], "Code": "InternalError", "SenderFault": False, "Message": "try again"},
                    {"Id": ids[1], "Code": "ReceiptHandleIsInvalid", "SenderFault": True, "Message": "old"},
                ]})
            elif attempt == 1:
                run.record_error(call, ConnectionError("reset"))
            elif attempt == 2 and call.get("m0", {}).get("Id") == "id/0":
                run.record(call, {"Failed": [{"Id": "m0", "Code": "InternalError", "SenderFault": False}],
                                  "Successful": [{"Id": i} for i in ids[1:]]})
            else:
                run.record(call, {"Successful": [{"Id": i} for i in ids]})
    assert attempt == 3
    assert [(f.message_id, f.code) for f in run.failures] == [("id/1", "ReceiptHandleIsInvalid")]
    assert run.succeeded == 11

    always_failing = BatchCallRun(refs[:2], attempts=2)
    while calls := always_failing.next_calls():
        for call in calls:
            always_failing.record_error(call, TimeoutError("slow"))
    assert sorted(f.message_id for f in always_failing.failures) == ["id/0", "id/1"]


# S3 keys: valid UTF-8 (no lone surrogates), 1..1024 bytes.
s3_keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200
).filter(lambda k: len(k.encode("utf-8")) <= 1024)


@settings(max_examples=300, deadline=None)
@given(folder=s3_keys, encoder=st.sampled_from(["quote_plus", "quote_plus_safe", "quote"]))
def test_any_key_s3_can_encode_decodes_back(folder: str, encoder: str) -> None:
    key = f"{folder}/_SUCCESS"
    if encoder == "quote_plus":
        encoded = quote_plus(key)
    elif encoder == "quote_plus_safe":
        encoded = quote_plus(key, safe="/")  # S3 leaves some characters alone; '+' is always %2B
    else:
        encoded = quote(key, safe="/")  # a space as %20 also decodes right
    parsed = parse_message(s3_body(s3_record("bkt", encoded, encode=False)), "m")
    assert parsed.kind == "events"
    assert parsed.events[0].key == key
    batch = BatchFilter(batch_prefix=folder.lstrip("/") + "/").batch_for(parsed.events[0], "m")
    if folder.lstrip("/") == folder:
        assert batch is not None and batch["prefix"] == folder + "/"
    # the same key through EventBridge (not encoded) and inside an SNS envelope
    assert parse_message(eventbridge_body("bkt", key), "m").events[0].key == key
    assert parse_message(sns_envelope(s3_body(s3_record("bkt", key))), "m").events[0].key == key


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(doc=json_values)
def test_parser_never_raises_on_arbitrary_json(doc: Any) -> None:
    parsed = parse_message(json.dumps(doc), "m")
    assert parsed.kind in ("events", "test_event", "unrecognised")


@settings(max_examples=300, deadline=None)
@given(
    records=st.lists(
        st.fixed_dictionaries({}, optional={
            "eventVersion": st.sampled_from(["2.1", "2.0", "1.0", 2]),
            "eventSource": st.sampled_from(["aws:s3", "aws:sqs"]),
            "eventName": st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", 5]),
            "eventTime": json_values,
            "s3": st.fixed_dictionaries({}, optional={
                "bucket": st.fixed_dictionaries({}, optional={"name": json_values}),
                "object": st.fixed_dictionaries({}, optional={"key": json_values, "size": json_values,
                                                              "eTag": json_values}),
            }),
        }),
        max_size=3,
    ),
    wrap=st.booleans(),
    raw=st.text(max_size=50),
)
def test_parser_never_raises_on_s3_shaped_noise(records: list, wrap: bool, raw: str) -> None:
    body = s3_body(*records)
    for candidate in (sns_envelope(body) if wrap else body, raw):
        parsed = parse_message(candidate, "m")
        assert parsed.kind in ("events", "test_event", "unrecognised")
        for event in parsed.events:
            BatchFilter().batch_for(event, "m")
        scan = ReceiveScan(BatchFilter())
        scan.add([msg("m", candidate)])
        assert scan.received == 1
