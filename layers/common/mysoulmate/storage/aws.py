"""boto3 clients as every AWS adapter builds them: region, endpoint and retries from settings.

boto3 is imported on the first call only: a function whose backend is not on AWS never
pays for it at cold start.
"""

from __future__ import annotations

from typing import Any

from mysoulmate.core.settings import get_settings


def aws_client(service: str) -> Any:
    """A boto3 client with the region and (for tests, LocalStack-style setups) endpoint.
    S3 signs with SigV4 (presigned links: SigV2 is refused in newer regions and cannot
    last 7 days)."""
    import boto3
    from botocore.config import Config

    settings = get_settings()
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=3)
    if service == "s3":
        config = config.merge(Config(signature_version="s3v4"))
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=config,
    )
