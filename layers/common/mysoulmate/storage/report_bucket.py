"""Where the AWS shape keeps its reports: an S3 bucket, one prefix per period.

``reports/<period key>/`` holds ``report.html``, ``report.csv`` and ``report.json``; the JSON
is written last with ``If-None-Match: *``, so it marks a complete report and two runs for the
same period cannot both complete it. ``slack-posted`` beside them is the claim of the one
Slack summary per period, also taken with ``If-None-Match: *``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from mysoulmate.analytics.ports import StorageUnavailableError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PREFIX = "reports/"
MARKER = "report.json"
SLACK_CLAIM = "slack-posted"
CONTENT_TYPES = {
    "report.html": "text/html; charset=utf-8",
    "report.csv": "text/csv; charset=utf-8",
    "report.json": "application/json",
}


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class S3ReportBucket:
    def __init__(self, bucket: str, client: S3Client) -> None:
        self.bucket = bucket
        self._client = client

    def key(self, period_key: str, name: str) -> str:
        return f"{PREFIX}{period_key}/{name}"

    def exists(self, period_key: str) -> bool:
        """Whether the period's report is complete (its JSON, written last, is there)."""
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.key(period_key, MARKER))
        except ClientError as exc:
            if _code(exc) in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise StorageUnavailableError(f"s3: {_code(exc)}") from None
        except BotoCoreError as exc:
            raise StorageUnavailableError(f"s3: {type(exc).__name__}") from None
        return True

    def write(self, period_key: str, files: dict[str, str], *, force: bool = False) -> bool:
        """Store the report's files, the JSON last (created only if absent unless ``force``);
        False when another run completed the same period first."""
        ordered = sorted(files, key=lambda name: name == MARKER)
        try:
            for name in ordered:
                extra = {"IfNoneMatch": "*"} if name == MARKER and not force else {}
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=self.key(period_key, name),
                    Body=files[name].encode(),
                    ContentType=CONTENT_TYPES.get(name, "application/octet-stream"),
                    **extra,  # type: ignore[arg-type]
                )
        except ClientError as exc:
            if _code(exc) in {"PreconditionFailed", "ConditionalRequestConflict"}:
                return False
            raise StorageUnavailableError(f"s3: {_code(exc)}") from None
        except BotoCoreError as exc:
            raise StorageUnavailableError(f"s3: {type(exc).__name__}") from None
        return True

    def claim_slack(self, period_key: str) -> bool:
        """Take the period's one Slack summary; False if it was already taken."""
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.key(period_key, SLACK_CLAIM),
                Body=b"",
                IfNoneMatch="*",
            )
        except ClientError as exc:
            if _code(exc) in {"PreconditionFailed", "ConditionalRequestConflict"}:
                return False
            raise StorageUnavailableError(f"s3: {_code(exc)}") from None
        return True

    def release_slack(self, period_key: str) -> None:
        """Give the claim back after a failed post, so the next run may post."""
        # On failure the summary is skipped for this period; the report itself stands.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._client.delete_object(Bucket=self.bucket, Key=self.key(period_key, SLACK_CLAIM))

    def read(self, period_key: str, name: str) -> str:
        response = self._client.get_object(Bucket=self.bucket, Key=self.key(period_key, name))
        return response["Body"].read().decode()

    def link(self, period_key: str, seconds: int) -> str:
        """A presigned GET of the HTML page. SigV4 caps it at 7 days, and at the lifetime
        of the credentials that sign it (a function's role session: hours), see
        docs/reports.md."""
        return str(
            self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self.key(period_key, "report.html")},
                ExpiresIn=seconds,
            )
        )
