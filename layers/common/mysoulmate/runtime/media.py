"""Wiring of the media endpoint group: its settings, its stores and its service.

The ``MEDIA_*`` variables are read here, into `MediaConfig` (a frozen dataclass), until they
join `core.settings.Settings`; `DATA_DIR`, the AWS region and endpoint come from the
settings. The service is built once per configuration, so tests that change the
environment get a service of their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from mysoulmate.core import concurrency
from mysoulmate.core.settings import SettingsError, get_settings
from mysoulmate.media.rules import Limits
from mysoulmate.media.service import MediaOptions, MediaService

# A Lambda response is at most 6 MB, and a binary body is sent base64-encoded (4/3 larger):
# 4 MB of image is the most that fits with the headers.
LAMBDA_REDIRECT_OVER_BYTES = 4_000_000


def _int(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _bool(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


@dataclass(frozen=True)
class MediaConfig:
    """Every ``MEDIA_*`` variable, with its default (README.md, docs/media.md)."""

    storage: Literal["local", "s3"]
    originals_dir: Path
    cache_dir: Path
    originals_bucket: str
    originals_prefix: str
    derivatives_bucket: str
    derivatives_prefix: str
    max_original_bytes: int
    max_pixels: int
    signing_secret: str
    signing_secret_parameter: str
    require_signed: bool
    redirect_over_bytes: int
    presign_seconds: int
    render_concurrency: int

    @classmethod
    def from_env(cls) -> MediaConfig:
        settings = get_settings()
        env = os.environ
        bucket = env.get("MEDIA_ORIGINALS_BUCKET", "").strip()
        storage = env.get("MEDIA_STORAGE", "").strip().lower() or ("s3" if bucket else "local")
        if storage not in ("local", "s3"):
            raise SettingsError(f"MEDIA_STORAGE must be local or s3, not {storage!r}")
        if storage == "s3" and not bucket:
            raise SettingsError("MEDIA_STORAGE=s3 needs MEDIA_ORIGINALS_BUCKET")
        config = cls(
            storage="s3" if storage == "s3" else "local",
            originals_dir=Path(env.get("MEDIA_ORIGINALS_DIR") or settings.data_dir / "media"),
            cache_dir=Path(env.get("MEDIA_CACHE_DIR") or settings.data_dir / "media-cache"),
            originals_bucket=bucket,
            originals_prefix=env.get("MEDIA_ORIGINALS_PREFIX", ""),
            derivatives_bucket=env.get("MEDIA_DERIVATIVES_BUCKET", "").strip() or bucket,
            # "_" cannot begin a key (media.rules.KEY_PATTERN): derivatives sharing the
            # originals' bucket can never be asked for as originals.
            derivatives_prefix=env.get("MEDIA_DERIVATIVES_PREFIX", "_derivatives/"),
            max_original_bytes=_int("MEDIA_MAX_ORIGINAL_BYTES", 25 * 1024 * 1024, 1, 2**31),
            max_pixels=_int("MEDIA_MAX_PIXELS", 50_000_000, 1, 500_000_000),
            signing_secret=env.get("MEDIA_SIGNING_SECRET", ""),
            signing_secret_parameter=env.get("MEDIA_SIGNING_SECRET_PARAMETER", ""),
            require_signed=_bool("MEDIA_REQUIRE_SIGNED"),
            redirect_over_bytes=_int(
                "MEDIA_REDIRECT_OVER_BYTES",
                LAMBDA_REDIRECT_OVER_BYTES if concurrency.ON_LAMBDA else 0,
                0,
                2**31,
            ),
            presign_seconds=_int("MEDIA_PRESIGN_SECONDS", 300, 1, 3600),
            render_concurrency=_int("MEDIA_RENDER_CONCURRENCY", os.cpu_count() or 2, 1, 64),
        )
        if config.require_signed and not (config.signing_secret or config.signing_secret_parameter):
            raise SettingsError(
                "MEDIA_REQUIRE_SIGNED=true needs MEDIA_SIGNING_SECRET or "
                "MEDIA_SIGNING_SECRET_PARAMETER"
            )
        return config


_VARIABLES = (
    "MEDIA_STORAGE",
    "MEDIA_ORIGINALS_DIR",
    "MEDIA_CACHE_DIR",
    "MEDIA_ORIGINALS_BUCKET",
    "MEDIA_ORIGINALS_PREFIX",
    "MEDIA_DERIVATIVES_BUCKET",
    "MEDIA_DERIVATIVES_PREFIX",
    "MEDIA_MAX_ORIGINAL_BYTES",
    "MEDIA_MAX_PIXELS",
    "MEDIA_SIGNING_SECRET",
    "MEDIA_SIGNING_SECRET_PARAMETER",
    "MEDIA_REQUIRE_SIGNED",
    "MEDIA_REDIRECT_OVER_BYTES",
    "MEDIA_PRESIGN_SECONDS",
    "MEDIA_RENDER_CONCURRENCY",
)


def media_service() -> MediaService:
    """The service for the environment as it is now (built once per configuration: a
    request pays for a few dictionary lookups, not for parsing the variables again)."""
    settings = get_settings()
    environment = (
        *(os.environ.get(name) for name in _VARIABLES),
        str(settings.data_dir),
        settings.aws_region,
        settings.aws_endpoint_url,
        str(concurrency.ON_LAMBDA),
    )
    return _service_for(environment)


@lru_cache(maxsize=4)
def _service_for(_environment: tuple[str | None, ...]) -> MediaService:
    return _service(MediaConfig.from_env())


@lru_cache(maxsize=4)
def _service(config: MediaConfig) -> MediaService:
    from mysoulmate.media.ports import Derivatives, Originals

    originals: Originals
    derivatives: Derivatives
    if config.storage == "s3":
        from mysoulmate.storage.media_s3 import S3Derivatives, S3Originals

        client = _s3_client()
        originals = S3Originals(client, config.originals_bucket, config.originals_prefix)
        derivatives = S3Derivatives(client, config.derivatives_bucket, config.derivatives_prefix)
    else:
        from mysoulmate.storage.media_local import LocalDerivatives, LocalOriginals

        originals = LocalOriginals(config.originals_dir)
        derivatives = LocalDerivatives(config.cache_dir)

    def signing_secret() -> str:
        from mysoulmate.core.errors import DependencyUnavailableError
        from mysoulmate.runtime.secrets import SecretUnavailableError, secret

        try:
            return secret(config.signing_secret, config.signing_secret_parameter)
        except SecretUnavailableError:
            raise DependencyUnavailableError(
                dependency="signing secret", headers={"Retry-After": "5"}
            ) from None

    options = MediaOptions(
        limits=Limits(config.max_original_bytes, config.max_pixels),
        signing_secret=signing_secret,
        require_signed=config.require_signed,
        redirect_over_bytes=config.redirect_over_bytes,
        presign_seconds=config.presign_seconds,
        render_concurrency=config.render_concurrency,
    )
    return MediaService(originals, derivatives, options)


def _s3_client() -> Any:
    """As `storage.aws.aws_client` builds clients, with Signature Version 4: the presigned
    URLs of redirects must be SigV4 (S3 refuses SigV2 in newer regions and for KMS)."""
    import boto3
    from botocore.config import Config

    settings = get_settings()
    client: Any = boto3.client(
        "s3",
        region_name=settings.aws_region,
        endpoint_url=settings.aws_endpoint_url,
        config=Config(
            signature_version="s3v4",
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=3,
        ),
    )
    return client


def install_media() -> None:
    """Hand the media router its service (the container, laptop and Lambda shapes alike).

    The configuration is validated now, so a bad ``MEDIA_*`` value stops start-up."""
    from mysoulmate.api.media import provide_media

    MediaConfig.from_env()
    provide_media(media_service)
