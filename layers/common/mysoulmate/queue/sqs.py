"""Amazon SQS producer: SendMessage, and SendMessageBatch within AWS's real limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.ports import QueueError
from mysoulmate.queue.limits import MAX_MESSAGE_BYTES, batches_within_limits

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef


class SqsQueue:
    def __init__(self, queue_url: str, client: SQSClient) -> None:
        self._url = queue_url
        self._client = client

    def send(self, body: str) -> None:
        if len(body.encode()) > MAX_MESSAGE_BYTES:
            raise QueueError(f"message exceeds the {MAX_MESSAGE_BYTES}-byte SQS limit")
        try:
            self._client.send_message(QueueUrl=self._url, MessageBody=body)
        except (ClientError, BotoCoreError) as exc:
            raise QueueError(f"sqs: {exc}") from exc

    def send_batch(self, bodies: Sequence[str]) -> None:
        failed: list[str] = []
        for call in batches_within_limits(bodies):
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {"Id": str(i), "MessageBody": body} for i, body in enumerate(call)
            ]
            try:
                response = self._client.send_message_batch(QueueUrl=self._url, Entries=entries)
            except (ClientError, BotoCoreError) as exc:
                raise QueueError(f"sqs: {exc}") from exc
            for failure in response.get("Failed", []):
                # Sender faults will fail again; transient ones get one direct retry.
                body = call[int(failure["Id"])]
                if failure.get("SenderFault"):
                    failed.append(f"{failure['Code']}: {failure.get('Message', '')}")
                else:
                    try:
                        self.send(body)
                    except QueueError as exc:
                        failed.append(str(exc))
        if failed:
            raise QueueError(f"{len(failed)} message(s) not queued: {failed[0]}")

    def ping(self) -> None:
        try:
            self._client.get_queue_attributes(
                QueueUrl=self._url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        except (ClientError, BotoCoreError) as exc:
            raise QueueError(f"sqs: {exc}") from exc
