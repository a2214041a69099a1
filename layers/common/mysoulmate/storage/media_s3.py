"""The media stores on S3 (the AWS shape): originals in one bucket (under an optional
prefix), derivatives and source records in a bucket under a prefix of their own.

One HEAD per request for the original (its ETag is the version the content hash is cached
under), one GET for the source record unless this process remembers it, one GET for the
derivative. A derivative too large for a Lambda response is not downloaded: its size comes
with the GET's headers, the body is left unread, and the client is sent a presigned URL.
"""

from __future__ import annotations

from typing import Any

from mysoulmate.media.ports import Fetched, OriginalInfo
from mysoulmate.media.rules import check_key

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _missing(exc: Exception) -> bool:
    return _code(exc) in _MISSING


class S3Originals:
    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def stat(self, key: str) -> OriginalInfo | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + check_key(key))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        version = f"{head.get('ETag', '')}:{head.get('VersionId', '')}:{head['ContentLength']}"
        return OriginalInfo(int(head["ContentLength"]), version)

    def read(self, key: str, max_bytes: int) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            # A Range read: never more than the limit (+1 to see that there was more).
            got = self.client.get_object(
                Bucket=self.bucket, Key=self.prefix + check_key(key), Range=f"bytes=0-{max_bytes}"
            )
        except ClientError as exc:
            if _missing(exc):
                return None
            if _code(exc) == "InvalidRange":  # an empty object has no byte 0
                return b""
            raise
        body = got["Body"]
        try:
            data: bytes = body.read(max_bytes + 1)
        finally:
            body.close()
        return data


class S3Derivatives:
    def __init__(self, client: Any, bucket: str, prefix: str = "_derivatives/") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix

    def get(self, name: str, max_bytes: int | None = None) -> Fetched | None:
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)
        except ClientError as exc:
            if _missing(exc):
                return None
            raise
        body = got["Body"]
        try:
            size = int(got["ContentLength"])
            if max_bytes is not None and size > max_bytes:
                return Fetched(size, None)
            data: bytes = body.read()
        finally:
            body.close()
        return Fetched(size, data)

    def put(self, name: str, data: bytes, media_type: str) -> None:
        extra = {}
        if media_type.startswith("image/"):
            # What a client fetching a presigned URL gets: the same caching as from us.
            extra["CacheControl"] = "public, max-age=31536000, immutable"
        self.client.put_object(
            Bucket=self.bucket, Key=self.prefix + name, Body=data, ContentType=media_type, **extra
        )

    def presigned_url(self, name: str, expires_in: int) -> str | None:
        url: str = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.prefix + name},
            ExpiresIn=expires_in,
        )
        return url
