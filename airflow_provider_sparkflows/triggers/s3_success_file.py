"""Wait, without blocking, for ``_SUCCESS`` markers announced by S3 event notifications on SQS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent
from airflow.triggers.shared_stream import AdvanceItem, SharedStreamProducer

from airflow_provider_sparkflows.s3_events import (
    DEFAULT_SUCCESS_FILE_NAME,
    BatchCallRun,
    BatchFilter,
    EntryFailure,
    MessageRef,
    ReceiveScan,
    call_entries,
    describe_failures,
    refs_from_receipts,
)

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.sqs import SqsHook

DEFAULT_VISIBILITY_TIMEOUT = 120
DEFAULT_WAIT_TIME_SECONDS = 20


class S3SuccessFileTrigger(BaseEventTrigger):
    """
    Long-poll an SQS queue of S3 event notifications until ``_SUCCESS`` markers arrive.

    Two uses:

    * resuming a deferred :class:`~airflow_provider_sparkflows.sensors.s3_success_file.S3SuccessFileSensor`
      (``deferred_task=True``): one event ``{"status": "success", "batches": [...], "receipts": [...]}``
      once batches are found (or ``{"status": "timeout"}`` / ``{"status": "error", "message": ...}``).
      Nothing is deleted here: the matched messages stay hidden for ``visibility_timeout`` seconds and the
      task deletes them after it has handed the batches on.
    * an ``AssetWatcher`` trigger (``deferred_task=False``, the default): one event per batch, whose
      payload is the batch dict. In the triggerer the queue is read through a shared stream in ack mode:
      a message is deleted only after the events derived from it were persisted to the metadata
      database; otherwise it is made visible again at once.

    Unmatched messages are made visible again at once (deleted with ``delete_unmatched``), ``s3:TestEvent``
    messages are deleted, unrecognised ones are left alone for the queue's redrive policy and logged once.

    :param sqs_queue_url: URL of the SQS queue S3 (or SNS, or EventBridge) sends the events to.
    :param aws_conn_id: The Airflow AWS connection.
    :param region_name: AWS region; ``None``: from the connection.
    :param bucket: Only markers in this bucket.
    :param prefix: Only markers under this key prefix.
    :param batch_prefix: Only the marker in exactly this folder.
    :param success_file_name: The marker's file name.
    :param max_batches: At most this many batches per event (task use) or per receive round.
    :param wait_time_seconds: Long-polling wait of the first ``ReceiveMessage`` of a round (0..20).
    :param visibility_timeout: Seconds a received message stays hidden until deleted or released.
    :param delete_unmatched: Delete S3 event messages that match no batch instead of releasing them.
    :param poll_interval: Seconds to sleep between empty receive rounds (on top of long polling).
    :param deferred_task: True when resuming a deferred sensor; False for an ``AssetWatcher``.
    :param deadline: Epoch seconds after which a deferred-task trigger gives up with a timeout event.
    """

    def __init__(
        self,
        *,
        sqs_queue_url: str,
        aws_conn_id: str | None = "aws_default",
        region_name: str | None = None,
        bucket: str | None = None,
        prefix: str | None = None,
        batch_prefix: str | None = None,
        success_file_name: str = DEFAULT_SUCCESS_FILE_NAME,
        max_batches: int | None = None,
        wait_time_seconds: int = DEFAULT_WAIT_TIME_SECONDS,
        visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
        delete_unmatched: bool = False,
        poll_interval: float = 0.0,
        deferred_task: bool = False,
        deadline: float | None = None,
    ) -> None:
        super().__init__()
        self.sqs_queue_url = sqs_queue_url
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.bucket = bucket
        self.prefix = prefix
        self.batch_prefix = batch_prefix
        self.success_file_name = success_file_name
        self.max_batches = max_batches
        self.wait_time_seconds = wait_time_seconds
        self.visibility_timeout = visibility_timeout
        self.delete_unmatched = delete_unmatched
        self.poll_interval = poll_interval
        self.deferred_task = deferred_task
        self.deadline = deadline
        self._logged_unrecognised: set[str] = set()

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{self.__class__.__module__}.{self.__class__.__qualname__}",
            {
                "sqs_queue_url": self.sqs_queue_url,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "bucket": self.bucket,
                "prefix": self.prefix,
                "batch_prefix": self.batch_prefix,
                "success_file_name": self.success_file_name,
                "max_batches": self.max_batches,
                "wait_time_seconds": self.wait_time_seconds,
                "visibility_timeout": self.visibility_timeout,
                "delete_unmatched": self.delete_unmatched,
                "poll_interval": self.poll_interval,
                "deferred_task": self.deferred_task,
                "deadline": self.deadline,
            },
        )

    @property
    def batch_filter(self) -> BatchFilter:
        return BatchFilter(
            bucket=self.bucket,
            prefix=self.prefix,
            batch_prefix=self.batch_prefix,
            success_file_name=self.success_file_name,
        )

    def hook(self) -> SqsHook:
        from airflow.providers.amazon.aws.hooks.sqs import SqsHook

        return SqsHook(aws_conn_id=self.aws_conn_id, region_name=self.region_name)

    # -- receiving -------------------------------------------------------------------------------------

    async def scan(self, client: Any) -> ReceiveScan:
        """
        One receive round: receive until the queue answers empty, ``max_batches`` or the call budget.

        Test events are deleted and unmatched messages released before returning; the matched ones
        stay hidden for the caller to delete once the batches are safe.
        """
        scan = ReceiveScan(self.batch_filter, self.max_batches, self.delete_unmatched)
        try:
            for kwargs in scan.receive_calls(self.sqs_queue_url, self.wait_time_seconds,
                                             self.visibility_timeout):
                scan.add_response(await client.receive_message(**kwargs))
        finally:
            # Even when a receive fails midway, what was already received must not stay hidden.
            await self._settle(client, scan)
        return scan

    async def _settle(self, client: Any, scan: ReceiveScan) -> None:
        for message_id, reason in scan.unrecognised_not_in(self._logged_unrecognised):
            self.log.warning(
                "SQS message %s on %s is not an S3 event (%s); leaving it for the queue's redrive policy",
                message_id, self.sqs_queue_url, reason,
            )
        if scan.delete_now:
            await self.delete(client, scan.delete_now)
        if scan.release:
            await self.release(client, scan.release)

    async def _batch_call(self, client: Any, method: str, refs: Sequence[MessageRef],
                          **extra: Any) -> list[EntryFailure]:
        run = BatchCallRun(refs)
        while calls := run.next_calls():
            for call in calls:
                try:
                    run.record(call, await getattr(client, method)(
                        QueueUrl=self.sqs_queue_url, Entries=call_entries(call, **extra)
                    ))
                except Exception as exc:
                    run.record_error(call, exc)
        if run.failures:
            self.log.warning("%s on %s failed for: %s", method, self.sqs_queue_url,
                             describe_failures(run.failures))
        return run.failures

    async def delete(self, client: Any, refs: Sequence[MessageRef]) -> list[EntryFailure]:
        """Delete messages (retrying partial failures); returns what could not be deleted."""
        return await self._batch_call(client, "delete_message_batch", refs)

    async def release(self, client: Any, refs: Sequence[MessageRef]) -> list[EntryFailure]:
        """Make messages visible again at once; returns what could not be released."""
        return await self._batch_call(client, "change_message_visibility_batch", refs, VisibilityTimeout=0)

    # -- standalone run --------------------------------------------------------------------------------

    async def _sleep_between_rounds(self) -> None:
        delay = self.poll_interval
        if self.deadline is not None:
            delay = max(0.0, min(delay, self.deadline - time.time()))
        await asyncio.sleep(delay)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        if self.deferred_task:
            async for event in self._run_for_task():
                yield event
            return
        async for event in self._run_as_watcher():
            yield event

    async def _run_for_task(self) -> AsyncIterator[TriggerEvent]:
        try:
            async with await self.hook().get_async_conn() as client:
                while True:
                    if self.deadline is not None and time.time() >= self.deadline:
                        yield TriggerEvent({"status": "timeout", "queue_url": self.sqs_queue_url})
                        return
                    scan = await self.scan(client)
                    if scan.batches:
                        self.log.info("Found %d batch(es) on %s", len(scan.batches), self.sqs_queue_url)
                        yield TriggerEvent(
                            {"status": "success", "batches": list(scan.batches), "receipts": scan.receipts()}
                        )
                        return
                    await self._sleep_between_rounds()
        except Exception as exc:
            yield TriggerEvent({
                "status": "error",
                "message": f"receiving from {self.sqs_queue_url} (connection {self.aws_conn_id!r}) "
                           f"failed: {type(exc).__name__}: {exc}",
            })

    async def _run_as_watcher(self) -> AsyncIterator[TriggerEvent]:
        # Not the path the Airflow 3.3 triggerer takes (it uses the shared stream below). Here the
        # messages are deleted when the consumer asks for the next event, i.e. after it took the batches,
        # which for a triggerer would be before they reach the database.
        async with await self.hook().get_async_conn() as client:
            while True:
                scan = await self.scan(client)
                for batch in scan.batches:
                    yield TriggerEvent(dict(batch))
                if scan.matched:
                    await self.delete(client, scan.matched)
                if not scan.batches:
                    await self._sleep_between_rounds()

    # -- AssetWatcher: shared stream in ack mode ---------------------------------------------------------

    def shared_stream_key(self) -> Hashable | None:
        if self.deferred_task:
            return None  # a deferred task owns its messages until it resumes: no ack-mode stream
        _, kwargs = self.serialize()
        return ("sparkflows.s3_success_file", *sorted((k, repr(v)) for k, v in kwargs.items()))

    @classmethod
    def create_shared_stream_producer(cls, kwargs: dict[str, Any]) -> SharedStreamProducer:
        return S3SuccessFileProducer(cls(**kwargs))

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        batch_filter = self.batch_filter
        async for raw_event in shared_stream:
            # Yield every event of this raw event before pulling the next: that binds them to it, and
            # its messages are deleted only once all of them are persisted.
            for batch in raw_event["batches"]:
                if batch_filter.accepts(batch):
                    yield TriggerEvent(dict(batch))


class S3SuccessFileProducer(SharedStreamProducer):
    """
    The broker side of :class:`S3SuccessFileTrigger` as an ``AssetWatcher`` (shared-stream ack mode).

    Each receive round that found batches becomes one raw event ``{"batches": [...]}``; its broker
    payload is the receipts of the matched messages. :meth:`advance` deletes them when every
    subscriber's events were persisted, and makes them visible again at once otherwise (an ack timeout,
    an overflow, nobody subscribed) so SQS redelivers them.

    :param trigger: A trigger built from the group's kwargs; it carries the queue and the filters.
    """

    def __init__(self, trigger: S3SuccessFileTrigger) -> None:
        self.trigger = trigger
        self._stack = AsyncExitStack()
        self._client: Any = None

    async def _get_client(self) -> Any:
        # One client for the lifetime of the poll, closed in aclose() after the last advance.
        if self._client is None:
            self._client = await self._stack.enter_async_context(await self.trigger.hook().get_async_conn())
        return self._client

    async def open_stream(self) -> AsyncIterator[tuple[Any, Any]]:  # type: ignore[override]
        client = await self._get_client()
        while True:
            scan = await self.trigger.scan(client)
            if scan.batches:
                yield {"batches": list(scan.batches)}, {"receipts": scan.receipts()}
            else:
                await self.trigger._sleep_between_rounds()

    async def advance(self, batch: Sequence[AdvanceItem]) -> None:
        # Never raises: a failed delete or release must not tear the whole stream down; SQS redelivers
        # whatever was not deleted once its visibility timeout runs out.
        to_delete: list[MessageRef] = []
        to_release: list[MessageRef] = []
        for item in batch:
            refs = refs_from_receipts(item.broker_payload["receipts"])
            (to_delete if item.outcome.is_clean else to_release).extend(refs)
        try:
            client = await self._get_client()
            if to_delete:
                await self.trigger.delete(client, to_delete)
            if to_release:
                self.trigger.log.warning(
                    "Events from messages %s were not all persisted; making them visible again",
                    ", ".join(ref["Id"] for ref in to_release),
                )
                await self.trigger.release(client, to_release)
        except Exception:
            self.trigger.log.exception("Advancing %s failed; SQS will redeliver", self.trigger.sqs_queue_url)

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None
