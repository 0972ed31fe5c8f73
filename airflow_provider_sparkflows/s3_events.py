"""Turn SQS messages carrying S3 event notifications into ``_SUCCESS`` batches.

Pure logic, shared by the sensor (boto3, sync), the trigger (aiobotocore, async) and the AssetWatcher
producer: no Airflow, no boto3 import. One SQS message is classified as

* ``events``: S3 object events (S3's own ``Records[]`` format, the same inside an SNS envelope with raw
  delivery on or off, or an EventBridge ``Object Created`` event), possibly none that count;
* ``test_event``: the ``s3:TestEvent`` S3 sends when notifications are configured;
* ``unrecognised``: anything else, with a reason. Parsing never raises.

A *batch* is the folder holding a ``_SUCCESS`` marker, as a JSON-safe dict (see :class:`Batch`).
:class:`ReceiveScan` folds the messages of one receive round (several ``ReceiveMessage`` calls) into
batches plus what to do with every message: delete after hand-on, release, delete now, or leave alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict
from urllib.parse import unquote_plus

__all__ = [
    "MAX_RECEIVE_CALLS",
    "BatchCallRun",
    "receive_kwargs",
    "EntryFailure",
    "MessageRef",
    "call_entries",
    "describe_failures",
    "plan_batch_calls",
    "refs_from_receipts",
    "Batch",
    "BatchFilter",
    "MessageKind",
    "ObjectEvent",
    "ParsedMessage",
    "ReceiveScan",
    "batch_from_event",
    "batch_key",
    "normalize_folder",
    "parse_message",
]

DEFAULT_SUCCESS_FILE_NAME = "_SUCCESS"

MessageKind = Literal["events", "test_event", "unrecognised"]


class Batch(TypedDict):
    """One complete folder: what the sensor returns and the AssetWatcher event payload."""

    bucket: str
    prefix: str
    uri: str
    key: str
    event_time: str | None
    etag: str | None
    size: int | None
    message_id: str | None


@dataclass(frozen=True)
class ObjectEvent:
    """One S3 object-created event, the key already decoded."""

    bucket: str
    key: str
    event_time: str | None
    etag: str | None
    size: int | None


@dataclass(frozen=True)
class ParsedMessage:
    """The classification of one SQS message body."""

    message_id: str
    kind: MessageKind
    events: tuple[ObjectEvent, ...] = ()
    reason: str | None = None


def _unrecognised(message_id: str, reason: str) -> ParsedMessage:
    return ParsedMessage(message_id=message_id, kind="unrecognised", reason=reason)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _as_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_test_event(doc: Mapping[str, Any]) -> bool:
    return doc.get("Event") == "s3:TestEvent"


def _parse_records(message_id: str, records: Any) -> ParsedMessage:
    """S3's native format: keys are form-encoded (``+`` for space), as S3 writes them."""
    if not isinstance(records, list) or not records:
        return _unrecognised(message_id, "'Records' is not a non-empty list")
    events: list[ObjectEvent] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            return _unrecognised(message_id, f"Records[{index}] is not an object")
        if record.get("eventSource") != "aws:s3":
            return _unrecognised(message_id, f"Records[{index}].eventSource is {record.get('eventSource')!r}")
        version = record.get("eventVersion")
        if not isinstance(version, str) or not version.startswith("2."):
            return _unrecognised(message_id, f"Records[{index}].eventVersion {version!r} is not 2.x")
        event_name = record.get("eventName")
        s3 = record.get("s3")
        bucket = s3.get("bucket") if isinstance(s3, dict) else None
        obj = s3.get("object") if isinstance(s3, dict) else None
        bucket_name = bucket.get("name") if isinstance(bucket, dict) else None
        raw_key = obj.get("key") if isinstance(obj, dict) else None
        if not (isinstance(event_name, str) and isinstance(bucket_name, str) and isinstance(raw_key, str)):
            return _unrecognised(
                message_id, f"Records[{index}] lacks eventName, s3.bucket.name or s3.object.key"
            )
        if not event_name.startswith("ObjectCreated:"):
            continue  # a real S3 event, just not one that completes a batch
        assert isinstance(obj, dict)
        events.append(
            ObjectEvent(
                bucket=bucket_name,
                key=unquote_plus(raw_key),
                event_time=_as_str(record.get("eventTime")),
                etag=_as_str(obj.get("eTag")),
                size=_as_int(obj.get("size")),
            )
        )
    return ParsedMessage(message_id=message_id, kind="events", events=tuple(events))


def _parse_eventbridge(message_id: str, doc: Mapping[str, Any]) -> ParsedMessage:
    """EventBridge's format: the key is NOT URL-encoded, so it is taken as is."""
    detail = doc.get("detail")
    bucket = detail.get("bucket") if isinstance(detail, dict) else None
    obj = detail.get("object") if isinstance(detail, dict) else None
    bucket_name = bucket.get("name") if isinstance(bucket, dict) else None
    key = obj.get("key") if isinstance(obj, dict) else None
    if not isinstance(bucket_name, str) or not isinstance(key, str):
        return _unrecognised(message_id, "EventBridge event lacks detail.bucket.name or detail.object.key")
    if doc.get("detail-type") != "Object Created":
        return ParsedMessage(message_id=message_id, kind="events")
    assert isinstance(obj, dict)
    return ParsedMessage(
        message_id=message_id,
        kind="events",
        events=(
            ObjectEvent(
                bucket=bucket_name,
                key=key,
                event_time=_as_str(doc.get("time")),
                etag=_as_str(obj.get("etag", obj.get("eTag"))),
                size=_as_int(obj.get("size")),
            ),
        ),
    )


def _classify(message_id: str, doc: Any, *, in_envelope: bool) -> ParsedMessage:
    if not isinstance(doc, dict):
        return _unrecognised(message_id, f"body is JSON {type(doc).__name__}, not an object")
    if _is_test_event(doc):
        return ParsedMessage(message_id=message_id, kind="test_event")
    if "Records" in doc:
        return _parse_records(message_id, doc["Records"])
    if doc.get("source") == "aws.s3" and "detail-type" in doc:
        return _parse_eventbridge(message_id, doc)
    if doc.get("Type") == "Notification" and "Message" in doc and not in_envelope:
        inner = doc["Message"]
        if not isinstance(inner, str):
            return _unrecognised(message_id, "SNS envelope 'Message' is not a string")
        try:
            inner_doc = json.loads(inner)
        except ValueError:
            return _unrecognised(message_id, "SNS envelope 'Message' is not JSON")
        return _classify(message_id, inner_doc, in_envelope=True)
    return _unrecognised(message_id, "not an S3, SNS or EventBridge S3 event")


def parse_message(body: Any, message_id: str) -> ParsedMessage:
    """
    Classify one SQS message body; never raises.

    :param body: The SQS message ``Body`` (a string; anything else is unrecognised).
    :param message_id: The SQS ``MessageId``, carried into the result for logging and batches.
    """
    try:
        if not isinstance(body, str):
            return _unrecognised(message_id, f"body is {type(body).__name__}, not a string")
        try:
            doc = json.loads(body)
        except ValueError:
            return _unrecognised(message_id, "body is not JSON")
        return _classify(message_id, doc, in_envelope=False)
    except Exception as exc:  # a parser bug must not take a poll loop down with it
        return _unrecognised(message_id, f"parser error {type(exc).__name__}")


def normalize_folder(folder: str) -> str:
    """Return ``folder`` with exactly one trailing slash and no leading one; ``""`` stays ``""``."""
    folder = folder.lstrip("/")
    if folder and not folder.endswith("/"):
        folder += "/"
    return folder


def batch_from_event(
    event: ObjectEvent, message_id: str | None, success_file_name: str = DEFAULT_SUCCESS_FILE_NAME
) -> Batch | None:
    """The batch an event completes, or ``None`` when the object is not a ``success_file_name`` marker."""
    folder, _, name = event.key.rpartition("/")
    if name != success_file_name:
        return None
    prefix = f"{folder}/" if folder else ""
    return Batch(
        bucket=event.bucket,
        prefix=prefix,
        uri=f"s3://{event.bucket}/{prefix}",
        key=event.key,
        event_time=event.event_time,
        etag=event.etag,
        size=event.size,
        message_id=message_id,
    )


def batch_key(batch: Mapping[str, Any]) -> str:
    """The identity of a batch for de-duplication: its folder URI."""
    return str(batch["uri"])


@dataclass(frozen=True)
class BatchFilter:
    """
    Which batches one sensor or trigger waits for.

    :param bucket: Only markers in this bucket (``None``: any bucket).
    :param prefix: Only markers whose key starts with this prefix.
    :param batch_prefix: Only the marker directly in this folder (trailing slash optional).
    :param success_file_name: The marker's file name.
    """

    bucket: str | None = None
    prefix: str | None = None
    batch_prefix: str | None = None
    success_file_name: str = DEFAULT_SUCCESS_FILE_NAME

    def accepts(self, batch: Mapping[str, Any]) -> bool:
        """Whether a batch (as built by :func:`batch_from_event`) passes this filter."""
        if batch["key"].rpartition("/")[2] != self.success_file_name:
            return False
        if self.bucket and batch["bucket"] != self.bucket:
            return False
        if self.prefix and not batch["key"].startswith(self.prefix.lstrip("/")):
            return False
        if self.batch_prefix is not None and batch["prefix"] != normalize_folder(self.batch_prefix):
            return False
        return True

    def batch_for(self, event: ObjectEvent, message_id: str | None) -> Batch | None:
        """The batch ``event`` completes if it passes this filter, else ``None``."""
        batch = batch_from_event(event, message_id, self.success_file_name)
        if batch is None or not self.accepts(batch):
            return None
        return batch

    def batches_for(self, parsed: ParsedMessage) -> list[Batch]:
        """Every batch one parsed message completes for this filter, in record order."""
        batches = []
        for event in parsed.events:
            batch = self.batch_for(event, parsed.message_id)
            if batch is not None:
                batches.append(batch)
        return batches


MAX_RECEIVE_CALLS = 50
"""``ReceiveMessage`` calls per receive round at most (500 messages): a poke is bounded in time."""


def receive_kwargs(
    queue_url: str, call_index: int, wait_time_seconds: int, visibility_timeout: int
) -> dict[str, Any]:
    """
    Arguments of the ``call_index``-th ``ReceiveMessage`` call of a receive round.

    Only the first call long-polls: the following ones scan further into the queue and stop the round
    at the first empty answer instead of waiting again. Every message stays hidden for
    ``visibility_timeout`` seconds, which must cover the round plus the hand-on.
    """
    return {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": 10,
        "WaitTimeSeconds": wait_time_seconds if call_index == 0 else 0,
        "VisibilityTimeout": visibility_timeout,
        "MessageSystemAttributeNames": ["ApproximateReceiveCount"],
    }


class MessageRef(TypedDict):
    """What SQS needs to delete or release a received message."""

    Id: str
    ReceiptHandle: str


@dataclass
class ReceiveScan:
    """
    Fold the messages of one receive round into batches and per-message actions.

    Make the ``ReceiveMessage`` calls that :meth:`receive_calls` yields, feeding each response to
    :meth:`add_response` (the sync sensor and the async trigger share this loop logic; only the call
    differs). The round ends at the first empty answer, when :attr:`full`, or after
    ``MAX_RECEIVE_CALLS`` calls. Then:

    * :attr:`batches`: de-duplicated by folder, at most ``max_batches``, in receipt order;
    * :attr:`matched`: messages to delete once the batches are handed on (all messages that produced
      a returned batch, duplicates included);
    * :attr:`release`: messages to make visible again at once (unmatched, or beyond ``max_batches``);
    * :attr:`delete_now`: test events (and unmatched ones when ``delete_unmatched``);
    * :attr:`unrecognised`: ``(message_id, reason)`` pairs, also in :attr:`release`: they are never
      deleted, so the queue's redrive policy moves them to its dead-letter queue.

    :param batch_filter: Which batches count.
    :param max_batches: Stop after this many distinct batches (``None``: no limit).
    :param delete_unmatched: Delete recognised S3 messages that match no batch instead of releasing them.
    """

    batch_filter: BatchFilter
    max_batches: int | None = None
    delete_unmatched: bool = False
    batches: list[Batch] = field(default_factory=list)
    matched: list[MessageRef] = field(default_factory=list)
    release: list[MessageRef] = field(default_factory=list)
    delete_now: list[MessageRef] = field(default_factory=list)
    unrecognised: list[tuple[str, str]] = field(default_factory=list)
    _seen: dict[str, int] = field(default_factory=dict)
    _message_ids: set[str] = field(default_factory=set)
    _queue_drained: bool = False

    @property
    def full(self) -> bool:
        """Whether ``max_batches`` distinct batches were found (no need to receive more)."""
        return self.max_batches is not None and len(self.batches) >= self.max_batches

    @property
    def received(self) -> int:
        """How many distinct messages were fed in."""
        return len(self._message_ids)

    def receive_calls(
        self, queue_url: str, wait_time_seconds: int, visibility_timeout: int
    ) -> Iterator[dict[str, Any]]:
        """The keyword arguments of each ``ReceiveMessage`` call of this round, one call at a time."""
        for call_index in range(MAX_RECEIVE_CALLS):
            if self._queue_drained or self.full:
                return
            yield receive_kwargs(queue_url, call_index, wait_time_seconds, visibility_timeout)

    def add_response(self, response: Mapping[str, Any]) -> None:
        """Classify one ``ReceiveMessage`` response; an empty one ends the round."""
        messages = response.get("Messages") or []
        if not messages:
            self._queue_drained = True
        self.add(messages)

    def unrecognised_not_in(self, logged: set[str]) -> list[tuple[str, str]]:
        """The unrecognised ``(message_id, reason)`` pairs not yet in ``logged``, which is updated."""
        new = [(message_id, reason) for message_id, reason in self.unrecognised if message_id not in logged]
        logged.update(message_id for message_id, _ in new)
        return new

    def add(self, messages: Iterable[Mapping[str, Any]]) -> None:
        """Classify the ``Messages`` of one ``ReceiveMessage`` response."""
        for message in messages:
            message_id = str(message.get("MessageId", ""))
            ref = MessageRef(Id=message_id, ReceiptHandle=str(message.get("ReceiptHandle", "")))
            if message_id in self._message_ids:
                # SQS may hand the same message out twice in one round; the newest receipt rules.
                self._replace_receipt(ref)
                continue
            self._message_ids.add(message_id)
            parsed = parse_message(message.get("Body"), message_id)
            if parsed.kind == "test_event":
                self.delete_now.append(ref)
                continue
            if parsed.kind == "unrecognised":
                self.unrecognised.append((message_id, parsed.reason or "unrecognised"))
                self.release.append(ref)
                continue
            self._add_batches(ref, self.batch_filter.batches_for(parsed))

    def _add_batches(self, ref: MessageRef, batches: Sequence[Batch]) -> None:
        used = False
        for batch in batches:
            key = batch_key(batch)
            if key in self._seen:
                used = True  # a duplicate of a batch already returned: delete it along with it
                continue
            if self.full:
                continue
            self._seen[key] = len(self.batches)
            self.batches.append(batch)
            used = True
        if used:
            self.matched.append(ref)
        elif batches:
            self.release.append(ref)  # beyond max_batches: somebody (or the next poke) takes it
        elif self.delete_unmatched:
            self.delete_now.append(ref)
        else:
            self.release.append(ref)

    def _replace_receipt(self, ref: MessageRef) -> None:
        for bucket in (self.matched, self.release, self.delete_now):
            for index, existing in enumerate(bucket):
                if existing["Id"] == ref["Id"]:
                    bucket[index] = ref
                    return

    def receipts(self) -> list[dict[str, str]]:
        """The matched messages as JSON-safe ``{"id", "receipt_handle"}`` dicts (trigger payloads)."""
        return [{"id": ref["Id"], "receipt_handle": ref["ReceiptHandle"]} for ref in self.matched]


def refs_from_receipts(receipts: Iterable[Mapping[str, Any]]) -> list[MessageRef]:
    """Inverse of :meth:`ReceiveScan.receipts`."""
    return [MessageRef(Id=str(r["id"]), ReceiptHandle=str(r["receipt_handle"])) for r in receipts]


BATCH_CALL_ATTEMPTS = 3
"""Tries per ``DeleteMessageBatch`` / ``ChangeMessageVisibilityBatch`` entry before it is reported."""


@dataclass(frozen=True)
class EntryFailure:
    """One entry SQS refused in a batch call, after retries."""

    message_id: str
    code: str
    message: str
    sender_fault: bool


def plan_batch_calls(refs: Sequence[MessageRef]) -> list[dict[str, MessageRef]]:
    """
    Split ``refs`` into SQS batch calls of at most 10 entries.

    Each call maps a short entry id (``m0``, ``m1``, ...) to its message: SQS entry ids must be unique
    per call and match ``[A-Za-z0-9_-]{1,80}``, which an arbitrary message id does not promise.
    """
    calls: list[dict[str, MessageRef]] = []
    for start in range(0, len(refs), 10):
        calls.append({f"m{start + offset}": ref for offset, ref in enumerate(refs[start : start + 10])})
    return calls


def call_entries(call: Mapping[str, MessageRef], **extra: Any) -> list[dict[str, Any]]:
    """The ``Entries`` argument of one planned batch call (``extra``: e.g. ``VisibilityTimeout=0``)."""
    return [
        {"Id": entry_id, "ReceiptHandle": ref["ReceiptHandle"], **extra} for entry_id, ref in call.items()
    ]


class BatchCallRun:
    """
    Drive one ``DeleteMessageBatch`` / ``ChangeMessageVisibilityBatch`` over any number of messages.

    The same retry policy for the sync sensor and the async trigger: entries that fail without a
    sender fault (throttling, an internal error, a failed call) are tried again, up to ``attempts``
    times; sender faults (an expired receipt handle) are final at once. Use as::

        run = BatchCallRun(refs)
        while calls := run.next_calls():
            for call in calls:
                try:
                    run.record(call, client.delete_message_batch(QueueUrl=url, Entries=call_entries(call)))
                except Exception as exc:
                    run.record_error(call, exc)

    :param refs: The messages.
    :param attempts: Tries per entry.
    """

    def __init__(self, refs: Sequence[MessageRef], attempts: int = BATCH_CALL_ATTEMPTS) -> None:
        self._pending: list[MessageRef] = list(refs)
        self._attempts_left = attempts
        self._retry: dict[str, EntryFailure] = {}
        self.failures: list[EntryFailure] = []
        self.succeeded = 0

    def next_calls(self) -> list[dict[str, MessageRef]]:
        """The calls of the next attempt; empty when every entry succeeded or ran out of tries."""
        if self._attempts_left <= 0 or not self._pending:
            self.failures.extend(self._retry.values())
            self._retry.clear()
            self._pending = []
            return []
        self._attempts_left -= 1
        calls = plan_batch_calls(self._pending)
        self._pending = []
        self._retry.clear()
        return calls

    def record(self, call: Mapping[str, MessageRef], response: Mapping[str, Any]) -> None:
        """Account for one call's response."""
        failed_ids: set[str] = set()
        for entry in response.get("Failed") or []:
            ref = call.get(str(entry.get("Id")))
            if ref is None:
                continue
            failed_ids.add(str(entry.get("Id")))
            failure = EntryFailure(
                message_id=ref["Id"],
                code=str(entry.get("Code", "")),
                message=str(entry.get("Message", "")),
                sender_fault=bool(entry.get("SenderFault", False)),
            )
            if failure.sender_fault:
                self.failures.append(failure)
            else:
                self._pending.append(ref)
                self._retry[ref["Id"]] = failure
        self.succeeded += len(call) - len(failed_ids)

    def record_error(self, call: Mapping[str, MessageRef], error: BaseException) -> None:
        """Account for a call that raised: every entry is tried again."""
        for ref in call.values():
            self._pending.append(ref)
            self._retry[ref["Id"]] = EntryFailure(
                message_id=ref["Id"], code=type(error).__name__, message=str(error), sender_fault=False
            )


def describe_failures(failures: Sequence[EntryFailure]) -> str:
    """One line naming every message a batch call could not handle, for logs and errors."""
    return "; ".join(f"{f.message_id}: {f.code} {f.message}".strip() for f in failures)
