"""Wait for ``_SUCCESS`` markers announced by S3 event notifications on an SQS queue."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.sensor import BaseSensorOperator, PokeReturnValue

from airflow_provider_sparkflows.s3_events import (
    DEFAULT_SUCCESS_FILE_NAME,
    Batch,
    BatchCallRun,
    BatchFilter,
    EntryFailure,
    MessageRef,
    ReceiveScan,
    call_entries,
    describe_failures,
    normalize_folder,
    refs_from_receipts,
)
from airflow_provider_sparkflows.triggers.s3_success_file import (
    DEFAULT_VISIBILITY_TIMEOUT,
    DEFAULT_WAIT_TIME_SECONDS,
    S3SuccessFileTrigger,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

#: ``task_state_store`` key holding the batches this task instance took off the queue. It is written
#: before any message is deleted and survives retries, so a try that dies after deleting hands the same
#: batches on when retried instead of losing them.
STATE_KEY = "s3_success_file_batches"


class S3SuccessFileSensor(BaseSensorOperator):
    """
    Wait for ``_SUCCESS`` markers notified on SQS and return one batch (a dict) per completed folder.

    The return value (XCom ``return_value``) is a list of batches
    ``{"bucket", "prefix", "uri", "key", "event_time", "etag", "size", "message_id"}``, ready for
    ``FireInsightsWorkflowOperator.partial(...).expand(...)``. With ``batch_prefix`` a marker already in
    S3 completes the sensor at once without calling SQS (``message_id`` is then ``None``).

    Delivery is at-least-once: a matched message is deleted only after its batches were written to the
    task's ``task_state_store`` and XCom; unmatched messages are made visible again at the end of every
    poke (in every mode nothing stays hidden between pokes); ``s3:TestEvent`` messages are deleted;
    unrecognised messages are never deleted (the queue's redrive policy moves them to its dead-letter
    queue) and are logged once per message id.

    :param sqs_queue_url: URL of the SQS queue receiving the S3 event notifications. (templated)
    :param bucket: Only markers in this bucket; required with ``batch_prefix``. (templated)
    :param prefix: Only markers whose key starts with this prefix. (templated)
    :param batch_prefix: The one folder this run waits for, e.g. ``raw/iot/{{ ds }}/``: a marker already
        there completes the sensor with no SQS call, and only events for that folder match. (templated)
    :param success_file_name: The marker's file name (default ``_SUCCESS``).
    :param max_batches: Return at most this many batches (``None``: all found in one receive round).
    :param aws_conn_id: The Airflow AWS connection.
    :param region_name: AWS region; ``None``: from the connection.
    :param wait_time_seconds: Long-polling wait of each poke's first ``ReceiveMessage`` (0..20 s).
    :param visibility_timeout: Seconds received messages stay hidden; must cover one poke plus the
        hand-on, and in deferrable mode the time from the trigger event to the task resuming.
    :param delete_unmatched: Delete S3 event messages that match no batch instead of making them
        visible again; only for a queue this sensor alone reads.
    :param deferrable: Wait in the triggerer (:class:`S3SuccessFileTrigger`) instead of a worker slot.
    """

    template_fields: Sequence[str] = ("sqs_queue_url", "bucket", "prefix", "batch_prefix")
    ui_color = "#f0eee4"

    def __init__(
        self,
        *,
        sqs_queue_url: str,
        bucket: str | None = None,
        prefix: str | None = None,
        batch_prefix: str | None = None,
        success_file_name: str = DEFAULT_SUCCESS_FILE_NAME,
        max_batches: int | None = None,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        wait_time_seconds: int = DEFAULT_WAIT_TIME_SECONDS,
        visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
        delete_unmatched: bool = False,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_batches is not None and max_batches < 1:
            raise ValueError(f"max_batches must be at least 1, got {max_batches}")
        if not 0 <= wait_time_seconds <= 20:
            raise ValueError(f"wait_time_seconds must be within 0..20 (SQS limit), got {wait_time_seconds}")
        if batch_prefix is not None and not bucket:
            raise ValueError("batch_prefix needs bucket: the backfill check looks for the marker in S3")
        self.sqs_queue_url = sqs_queue_url
        self.bucket = bucket
        self.prefix = prefix
        self.batch_prefix = batch_prefix
        self.success_file_name = success_file_name
        self.max_batches = max_batches
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.wait_time_seconds = wait_time_seconds
        self.visibility_timeout = visibility_timeout
        self.delete_unmatched = delete_unmatched
        self.deferrable = deferrable
        self._matched: list[MessageRef] = []
        self._logged_unrecognised: set[str] = set()

    # -- helpers ---------------------------------------------------------------------------------------

    @property
    def batch_filter(self) -> BatchFilter:
        return BatchFilter(
            bucket=self.bucket,
            prefix=self.prefix,
            batch_prefix=self.batch_prefix,
            success_file_name=self.success_file_name,
        )

    @cached_property
    def sqs_client(self) -> Any:
        """One boto3 SQS client for all pokes of this sensor: building one costs ~70 ms and 8 MiB."""
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        return SqsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).get_conn()

    @cached_property
    def s3_client(self) -> Any:
        """One boto3 S3 client for the backfill check of every poke."""
        from airflow.providers.amazon.aws.hooks.s3 import S3Hook

        return S3Hook(aws_conn_id=self.aws_conn_id, region_name=self.region_name).get_conn()

    def marker_in_s3(self) -> Batch | None:
        """The backfill check: the ``batch_prefix`` marker if it is already in S3 (no SQS call)."""
        if self.batch_prefix is None or not self.bucket:
            return None
        from botocore.exceptions import ClientError

        prefix = normalize_folder(self.batch_prefix)
        key = f"{prefix}{self.success_file_name}"
        try:
            head = self.s3_client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        last_modified = head.get("LastModified")
        self.log.info("Marker s3://%s/%s is already in S3; no SQS call", self.bucket, key)
        return Batch(
            bucket=self.bucket,
            prefix=prefix,
            uri=f"s3://{self.bucket}/{prefix}",
            key=key,
            event_time=last_modified.isoformat() if last_modified is not None else None,
            etag=str(head.get("ETag", "")).strip('"') or None,
            size=head.get("ContentLength"),
            message_id=None,
        )

    def _batch_call(self, client: Any, method: str, refs: Sequence[MessageRef],
                    **extra: Any) -> list[EntryFailure]:
        run = BatchCallRun(refs)
        while calls := run.next_calls():
            for call in calls:
                try:
                    run.record(call, getattr(client, method)(
                        QueueUrl=self.sqs_queue_url, Entries=call_entries(call, **extra)
                    ))
                except Exception as exc:
                    run.record_error(call, exc)
        if run.failures:
            self.log.warning("%s on %s failed for: %s", method, self.sqs_queue_url,
                             describe_failures(run.failures))
        return run.failures

    def scan(self, client: Any) -> ReceiveScan:
        """
        One receive round (the same as :meth:`S3SuccessFileTrigger.scan`, with boto3).

        Test events are deleted and unmatched messages released before returning, so nothing but the
        matched messages stays hidden after a poke.
        """
        scan = ReceiveScan(self.batch_filter, self.max_batches, self.delete_unmatched)
        try:
            for kwargs in scan.receive_calls(self.sqs_queue_url, self.wait_time_seconds,
                                             self.visibility_timeout):
                scan.add_response(client.receive_message(**kwargs))
        finally:
            for message_id, reason in scan.unrecognised_not_in(self._logged_unrecognised):
                self.log.warning(
                    "SQS message %s on %s is not an S3 event (%s); leaving it for the queue's "
                    "redrive policy", message_id, self.sqs_queue_url, reason,
                )
            if scan.delete_now:
                self._batch_call(client, "delete_message_batch", scan.delete_now)
            if scan.release:
                self._batch_call(client, "change_message_visibility_batch", scan.release, VisibilityTimeout=0)
        return scan

    # -- Airflow entry points --------------------------------------------------------------------------

    def poke(self, context: Context) -> bool | PokeReturnValue:
        if (marker := self.marker_in_s3()) is not None:
            self._matched = []
            return PokeReturnValue(is_done=True, xcom_value=[marker])
        self.log.info("Receiving S3 events from %s", self.sqs_queue_url)
        scan = self.scan(self.sqs_client)
        if not scan.batches:
            return False
        self.log.info("Found %d batch(es): %s", len(scan.batches), ", ".join(b["uri"] for b in scan.batches))
        self._matched = list(scan.matched)
        return PokeReturnValue(is_done=True, xcom_value=list(scan.batches))

    def execute(self, context: Context) -> Any:
        if (claimed := self._claimed(context)) is not None:
            return claimed
        if self.deferrable:
            if (marker := self.marker_in_s3()) is not None:
                return self.hand_on(context, [marker], [])
            self.defer(
                trigger=S3SuccessFileTrigger(
                    sqs_queue_url=self.sqs_queue_url,
                    aws_conn_id=self.aws_conn_id,
                    region_name=self.region_name,
                    bucket=self.bucket,
                    prefix=self.prefix,
                    batch_prefix=self.batch_prefix,
                    success_file_name=self.success_file_name,
                    max_batches=self.max_batches,
                    wait_time_seconds=self.wait_time_seconds,
                    visibility_timeout=self.visibility_timeout,
                    delete_unmatched=self.delete_unmatched,
                    poll_interval=float(self.poke_interval),
                    deferred_task=True,
                    deadline=time.time() + float(self.timeout),
                ),
                method_name="execute_complete",
                timeout=timedelta(seconds=float(self.timeout)),
            )
        batches = super().execute(context)
        return self.hand_on(context, batches, self._matched)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> list[Batch]:
        """Resume after :class:`S3SuccessFileTrigger` fired: hand the batches on, then delete."""
        from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

        if not event:
            raise AirflowException(f"S3SuccessFileSensor on {self.sqs_queue_url} resumed without an event")
        status = event.get("status")
        if status == "timeout":
            raise AirflowSensorTimeout(
                f"No _SUCCESS marker arrived on {self.sqs_queue_url} within {self.timeout}s"
            )
        if status != "success":
            raise AirflowException(f"S3SuccessFileTrigger failed: {event.get('message', event)}")
        return self.hand_on(context, event["batches"], refs_from_receipts(event["receipts"]))

    def _claimed(self, context: Context) -> list[Batch] | None:
        # A previous try of this task instance took batches off the queue (and maybe deleted the
        # messages) but did not finish: hand those on instead of waiting for new ones.
        claimed = context["task_state_store"].get(STATE_KEY)
        if isinstance(claimed, list) and claimed:
            self.log.info("Handing on %d batch(es) claimed by an earlier try", len(claimed))
            return claimed  # type: ignore[return-value]
        return None

    def hand_on(self, context: Context, batches: list[Batch], matched: Sequence[MessageRef]) -> list[Batch]:
        """
        Record the batches in Airflow, then delete their messages.

        Written first to ``task_state_store`` (survives retries of this task instance) and to the XCom
        ``return_value`` (what downstream tasks read); the task runner pushes the same value again with
        the mapping length once ``execute`` returns. Only then are the messages deleted.
        """
        context["task_state_store"].set(STATE_KEY, list(batches))  # type: ignore[arg-type]
        context["ti"].xcom_push(key="return_value", value=list(batches))
        if matched:
            failures = self._batch_call(self.sqs_client, "delete_message_batch", matched)
            if failures:
                # The batches are recorded; a message we could not delete comes back after its
                # visibility timeout and is delivered once more (at-least-once, never lost).
                self.log.warning(
                    "Batches handed on, but %d message(s) could not be deleted and will be delivered "
                    "again: %s", len(failures), describe_failures(failures),
                )
        return list(batches)
