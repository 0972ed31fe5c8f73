"""Helpers for the S3 sensor/trigger tests: queues, bucket notifications, crafted bodies, queue counts."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus


def make_queue(
    sqs: Any, name: str, *, visibility: int = 30, max_receives: int | None = None
) -> tuple[str, str]:
    """Create a queue (with a dead-letter queue when ``max_receives``); return (queue url, dlq url)."""
    dlq_url = ""
    attributes = {"VisibilityTimeout": str(visibility)}
    if max_receives is not None:
        dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        dlq_arn = queue_arn(sqs, dlq_url)
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receives}
        )
    return sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"], dlq_url


def queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def notify_queue(s3: Any, sqs: Any, bucket: str, queue_url: str) -> None:
    """Create ``bucket`` and make S3 (moto) send object-created events to the queue."""
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [{"QueueArn": queue_arn(sqs, queue_url), "Events": ["s3:ObjectCreated:*"]}]
        },
    )


def counts(sqs: Any, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def s3_record(bucket: str, key: str, event_name: str = "ObjectCreated:Put", encode: bool = True) -> dict:
    """One record of an S3-format notification (the key form-encoded as S3 does, unless ``encode=False``)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-01T10:00:00.000Z",
        "eventName": event_name,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": quote_plus(key) if encode else key,
                "size": 0,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
            },
        },
    }


def s3_body(*records: dict) -> str:
    """An S3-format notification body holding ``records``."""
    return json.dumps({"Records": list(records)})


def s3_event_body(bucket: str, *keys: str, event_name: str = "ObjectCreated:Put") -> str:
    """An S3-format notification body with one record per key (keys form-encoded as S3 does)."""
    return s3_body(*(s3_record(bucket, key, event_name) for key in keys))


def send_all(sqs: Any, url: str, bodies: list[str]) -> list[str]:
    """Send bodies in batches of 10; return the message ids in order."""
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = sqs.send_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        )
        assert not response.get("Failed"), response
        by_id = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
        ids.extend(by_id[str(i)] for i in range(len(chunk)))
    return ids


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Receive every visible message once (hiding them for 30 s); for assertions at the end of a test."""
    out: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, WaitTimeSeconds=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not messages:
            return out
        out.extend(messages)
