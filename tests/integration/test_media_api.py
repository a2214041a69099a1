"""`GET /api/v1/images/{key}` through the app: sizes, orientation, metadata, negotiation,
caching (ETag, 304, rendered once), signed URLs, hostile keys and originals, S3 (moto) with
the Lambda handler and its presigned redirect, and the memory a 24-megapixel photo costs."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mysoulmate.core import concurrency
from mysoulmate.media import imaging, signing
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.support import images
from tests.support.aws import REGION, FakeLambdaContext, http_event

URL = "/api/v1/images"
WEBP = {"Accept": "image/webp,image/*,*/*;q=0.8"}
IMMUTABLE = "public, max-age=31536000, immutable"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def originals(isolated_env: Path) -> Path:
    """MEDIA_ORIGINALS_DIR's default: DATA_DIR/media."""
    path = isolated_env / "media"
    path.mkdir(parents=True)
    return path


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, originals: Path) -> FastAPI:
    """The media router alone, as the media Lambda serves it (local stores here)."""
    monkeypatch.setenv("RATE_LIMIT_READ_PER_SECOND", "0")
    from mysoulmate.api.app_factory import create_app
    from mysoulmate.api.media import router
    from mysoulmate.runtime.media import install_media

    install_media()
    return create_app(router)


def put(originals: Path, key: str, data: bytes) -> str:
    path = originals / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return key


def renders() -> int:
    from mysoulmate.runtime.media import media_service

    return media_service().renders


def decoded(body: bytes) -> Image.Image:
    return images.opened(body)


# -- sizes, orientation, metadata -------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "size"),
    [
        ("w=512", (512, 341)),
        ("w=256&dpr=2", (512, 341)),
        ("preset=thumb", (128, 128)),
        ("preset=thumb&dpr=3", (512, 512)),
        ("preset=avatar&dpr=1.5", (512, 512)),
        ("preset=card", (512, 384)),
        ("preset=card&fit=contain", (512, 341)),
        ("preset=full", (1024, 683)),
        ("preset=full&dpr=2", (1200, 800)),  # never enlarged
        ("", (1024, 683)),
    ],
)
def test_sizes_from_the_ladder_presets_and_dpr(
    client: TestClient, originals: Path, query: str, size: tuple[int, int]
) -> None:
    put(originals, "photos/p.jpg", images.photo((1200, 800)))
    response = client.get(f"{URL}/photos/p.jpg?{query}", headers=WEBP)
    assert response.status_code == 200, response.text
    assert decoded(response.content).size == size


def test_a_width_off_the_ladder_is_400_naming_the_ladder(
    client: TestClient, originals: Path
) -> None:
    put(originals, "p.jpg", images.photo())
    response = client.get(f"{URL}/p.jpg?w=500", headers={"Accept-Language": "fr"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_width"
    assert "64, 128, 256, 512, 768, 1024, 1536, 2048" in error["message"]
    assert error["message"].startswith("La largeur 500")
    assert error["details"] == {"widths": [64, 128, 256, 512, 768, 1024, 1536, 2048]}


@pytest.mark.parametrize(
    ("query", "field"),
    [("dpr=4", "dpr"), ("dpr=0.5", "dpr"), ("preset=huge", "preset"), ("fit=stretch", "fit")],
)
def test_bad_parameters_are_422(
    client: TestClient, originals: Path, query: str, field: str
) -> None:
    put(originals, "p.jpg", images.photo())
    response = client.get(f"{URL}/p.jpg?{query}")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"] == f"query.{field}"


def test_unknown_parameters_are_422(client: TestClient, originals: Path) -> None:
    put(originals, "p.jpg", images.photo())
    response = client.get(f"{URL}/p.jpg?width=512")
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["type"] == "extra_forbidden"


def test_orientation_applied_and_metadata_stripped(client: TestClient, originals: Path) -> None:
    put(originals, "o.jpg", images.photo((400, 200), orientation=6, gps=True))
    response = client.get(f"{URL}/o.jpg?w=128", headers={"Accept": "image/jpeg"})
    out = decoded(response.content).convert("RGB")
    assert out.size == (128, 256)
    top = out.getpixel((64, 4))
    assert isinstance(top, tuple)
    assert top[0] > 150 > top[2]  # the stored left (red) edge is shown on top
    assert not Image.open(io.BytesIO(response.content)).getexif()
    assert b"Exif" not in response.content


def test_transparency_picks_png_for_clients_without_webp(
    client: TestClient, originals: Path
) -> None:
    put(originals, "logo.png", images.transparent_png())
    response = client.get(f"{URL}/logo.png?w=64", headers={"Accept": "image/*"})
    assert response.headers["content-type"] == "image/png"
    assert decoded(response.content).mode == "RGBA"


# -- negotiation and caching headers --------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("image/avif,image/webp,image/*,*/*;q=0.8", "image/avif"),
        ("image/webp,*/*", "image/webp"),
        ("image/jpeg", "image/jpeg"),
        ("*/*", "image/jpeg"),
        (None, "image/jpeg"),
    ],
)
def test_accept_negotiates_the_format(
    client: TestClient, originals: Path, accept: str | None, media_type: str
) -> None:
    if media_type == "image/avif" and not imaging.avif_supported():
        media_type = "image/webp"  # this Pillow cannot encode AVIF: skipped honestly
    put(originals, "p.jpg", images.photo())
    headers = {"Accept": accept} if accept is not None else {}
    response = client.get(f"{URL}/p.jpg?w=256", headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert Image.open(io.BytesIO(response.content)).format == media_type.split("/")[1].upper()
    # One cached copy per format, not per language: images carry no language.
    assert response.headers["vary"] == "Accept"
    assert "content-language" not in response.headers
    assert response.headers["cache-control"] == IMMUTABLE
    assert response.headers["cross-origin-resource-policy"] == "cross-origin"


def test_nothing_acceptable_is_406(client: TestClient, originals: Path) -> None:
    put(originals, "p.jpg", images.photo())
    response = client.get(
        f"{URL}/p.jpg", headers={"Accept": "application/json", "Accept-Language": "fr"}
    )
    assert response.status_code == 406
    assert response.json()["error"]["code"] == "not_acceptable"
    # An error is a message in the caller's language: that one does vary by language.
    assert response.headers["content-language"] == "fr"
    assert "Accept-Language" in response.headers["vary"]


def test_etag_and_304(client: TestClient, originals: Path) -> None:
    put(originals, "p.jpg", images.photo())
    first = client.get(f"{URL}/p.jpg?w=256", headers=WEBP)
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert len(etag) == 66
    again = client.get(f"{URL}/p.jpg?w=256", headers={**WEBP, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == IMMUTABLE
    other_format = client.get(f"{URL}/p.jpg?w=256", headers={"Accept": "image/jpeg"})
    assert other_format.headers["etag"] != etag
    other_size = client.get(f"{URL}/p.jpg?w=512", headers={**WEBP, "If-None-Match": etag})
    assert other_size.status_code == 200


def test_rendered_once_then_served_from_the_cache(
    client: TestClient, originals: Path, isolated_env: Path
) -> None:
    put(originals, "p.jpg", images.photo())
    first = client.get(f"{URL}/p.jpg?preset=card", headers=WEBP)
    assert renders() == 1
    cached = list((isolated_env / "media-cache").rglob("*.webp"))
    assert len(cached) == 1
    assert cached[0].read_bytes() == first.content
    assert cached[0].stem == first.headers["etag"].strip('"')
    second = client.get(f"{URL}/p.jpg?preset=card", headers=WEBP)
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    assert renders() == 1  # no second resize
    # The same variant spelled differently is the same derivative.
    assert client.get(f"{URL}/p.jpg?preset=card&fit=cover&dpr=1", headers=WEBP).status_code == 200
    assert renders() == 1


def sample(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return float(found.value)
    return 0.0


def test_metrics_tell_renders_from_cache_hits_and_304s(client: TestClient, originals: Path) -> None:
    from mysoulmate.observability.prometheus import exposition

    total = "mysoulmate_image_requests_total"
    counted = {
        "rendered": (total, {"outcome": "rendered", "format": "webp"}),
        "cache_hit": (total, {"outcome": "cache_hit", "format": "webp"}),
        "not_modified": (total, {"outcome": "not_modified", "format": "webp"}),
        "renders": ("mysoulmate_image_render_seconds_count", {"format": "webp"}),
    }
    # The process's counters outlive a test: compare before and after.
    before = exposition().decode()
    put(originals, "m.jpg", images.photo())
    first = client.get(f"{URL}/m.jpg?w=128", headers=WEBP)
    client.get(f"{URL}/m.jpg?w=128", headers=WEBP)
    client.get(f"{URL}/m.jpg?w=128", headers={**WEBP, "If-None-Match": first.headers["etag"]})
    after = exposition().decode()
    added = {
        name: sample(after, family, **labels) - sample(before, family, **labels)
        for name, (family, labels) in counted.items()
    }
    assert added == {"rendered": 1, "cache_hit": 1, "not_modified": 1, "renders": 1}
    render_sum = "mysoulmate_image_render_seconds_sum"
    assert sample(after, render_sum, format="webp") > sample(before, render_sum, format="webp")


def test_a_replaced_original_gets_new_derivatives(client: TestClient, originals: Path) -> None:
    put(originals, "p.jpg", images.photo((1200, 800)))
    before = client.get(f"{URL}/p.jpg?w=256", headers=WEBP)
    time.sleep(0.01)
    put(originals, "p.jpg", images.photo((800, 800)))
    after = client.get(f"{URL}/p.jpg?w=256", headers=WEBP)
    assert after.headers["etag"] != before.headers["etag"]
    assert decoded(after.content).size == (256, 256)


# -- signed URLs ------------------------------------------------------------------------------

SECRET = "media-signing-secret"


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDIA_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("MEDIA_REQUIRE_SIGNED", "true")


def signed_url(key: str, params: dict[str, Any], exp: int) -> str:
    query = {**params, **signing.sign(SECRET, key, params, exp)}
    return f"{URL}/{key}?" + "&".join(f"{k}={v}" for k, v in query.items())


@pytest.mark.usefixtures("signed")
def test_signed_urls_required_valid_expired_tampered(client: TestClient, originals: Path) -> None:
    put(originals, "private/p.jpg", images.photo())
    unsigned = client.get(f"{URL}/private/p.jpg?preset=avatar")
    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == "signature_required"
    url = signed_url("private/p.jpg", {"preset": "avatar", "dpr": 2}, int(time.time()) + 60)
    ok = client.get(url, headers=WEBP)
    assert ok.status_code == 200
    assert decoded(ok.content).size == (512, 512)
    tampered = client.get(url.replace("dpr=2", "dpr=3"))
    assert tampered.status_code == 403
    assert tampered.json()["error"]["code"] == "invalid_signature"
    expired = client.get(signed_url("private/p.jpg", {"w": 64}, int(time.time()) - 1))
    assert expired.status_code == 403
    assert expired.json()["error"]["code"] == "signature_expired"


def test_signing_required_without_a_secret_stops_start_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mysoulmate.core.settings import SettingsError
    from mysoulmate.runtime.media import install_media

    monkeypatch.setenv("MEDIA_REQUIRE_SIGNED", "true")
    with pytest.raises(SettingsError, match="MEDIA_SIGNING_SECRET"):
        install_media()


# -- hostile keys and originals ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "a%2F..%2F..%2Fsecret.jpg",
        "..",
        ".hidden.jpg",
        "a%5C..%5Csecret.jpg",
        "a%00.jpg",
    ],
)
def test_traversal_keys_are_refused(
    client: TestClient, originals: Path, isolated_env: Path, path: str
) -> None:
    (isolated_env / "secret.jpg").write_bytes(images.photo())
    response = client.get(f"{URL}/{path}")
    assert response.status_code in (404, 422), response.text
    assert response.headers["content-type"] == "application/json"


def test_a_symlink_out_of_the_originals_is_not_followed(
    client: TestClient, originals: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(images.photo())
    (originals / "link.jpg").symlink_to(outside)
    response = client.get(f"{URL}/link.jpg")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "image_not_found"


def test_a_missing_original_is_404(client: TestClient) -> None:
    response = client.get(f"{URL}/nope/none.jpg")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "image_not_found"


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (images.bomb_png(100_000, 100_000), 422, "image_too_many_pixels"),
        (images.bomb_png(10_000, 6_000), 422, "image_too_many_pixels"),
        (images.truncated(images.photo()), 422, "image_unreadable"),
        (b"%PDF-1.7 not an image at all", 422, "image_type_unsupported"),
        (images.tiff(), 422, "image_type_unsupported"),
        (b"", 422, "image_type_unsupported"),
    ],
)
def test_hostile_originals_are_refused_in_the_envelope(
    client: TestClient, originals: Path, data: bytes, status: int, code: str
) -> None:
    put(originals, "bad.img", data)
    response = client.get(f"{URL}/bad.img?w=64", headers={"Accept-Language": "de"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["requestId"]
    assert not error["message"].startswith("errors.")  # a catalog message, in German
    assert response.headers["content-language"] == "de"
    assert renders() == 0


def test_an_oversized_original_is_413(
    client: TestClient, originals: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIA_MAX_ORIGINAL_BYTES", "10000")
    put(originals, "big.jpg", images.photo((1200, 800)))
    response = client.get(f"{URL}/big.jpg?w=64")
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "image_too_large"
    assert "10000" in error["message"]


# -- S3 (moto), the Lambda handler and its presigned redirect ------------------------------------

ORIGINALS_BUCKET, DERIVATIVES_BUCKET = "mysoulmate-test-originals", "mysoulmate-test-derivatives"


@pytest.fixture
def s3(aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=ORIGINALS_BUCKET)
    client.create_bucket(Bucket=DERIVATIVES_BUCKET)
    monkeypatch.setenv("MEDIA_ORIGINALS_BUCKET", ORIGINALS_BUCKET)
    monkeypatch.setenv("MEDIA_DERIVATIVES_BUCKET", DERIVATIVES_BUCKET)
    monkeypatch.setenv("RATE_LIMIT_READ_PER_SECOND", "0")
    return client


def derivative_keys(s3: Any) -> list[str]:
    listed = s3.list_objects_v2(Bucket=DERIVATIVES_BUCKET, Prefix="_derivatives/")
    return [item["Key"] for item in listed.get("Contents", []) if not item["Key"].count("sources/")]


def test_s3_originals_and_derivatives(s3: Any, make_client: Callable[..., TestClient]) -> None:
    from mysoulmate.api.app_factory import create_app
    from mysoulmate.api.media import router
    from mysoulmate.runtime.media import install_media

    s3.put_object(Bucket=ORIGINALS_BUCKET, Key="u/1/p.jpg", Body=images.photo())
    install_media()
    client = make_client(create_app(router))
    first = client.get(f"{URL}/u/1/p.jpg?preset=avatar", headers=WEBP)
    assert first.status_code == 200, first.text
    assert decoded(first.content).size == (256, 256)
    [key] = derivative_keys(s3)
    stored = s3.get_object(Bucket=DERIVATIVES_BUCKET, Key=key)
    assert stored["Body"].read() == first.content
    assert stored["ContentType"] == "image/webp"
    second = client.get(f"{URL}/u/1/p.jpg?preset=avatar", headers=WEBP)
    assert second.content == first.content
    assert renders() == 1
    assert client.get(f"{URL}/u/1/none.jpg").status_code == 404


@pytest.fixture
def media_lambda(
    s3: Any,
    monkeypatch: pytest.MonkeyPatch,
    load_function: Callable[[str], Callable[[dict[str, Any], Any], dict[str, Any]]],
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "mysoulmate-test-media")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "media")
    monkeypatch.setattr(concurrency, "ON_LAMBDA", True)
    return load_function("media")


def image_event(path: str, query: str = "", accept: str = "image/webp") -> dict[str, Any]:
    event = http_event("GET", path, query=query)
    event["headers"]["accept"] = accept
    return event


def test_the_lambda_serves_binary_images(
    s3: Any, media_lambda: Callable[[dict[str, Any], Any], dict[str, Any]]
) -> None:
    s3.put_object(Bucket=ORIGINALS_BUCKET, Key="p.jpg", Body=images.photo())
    response = media_lambda(image_event(f"{URL}/p.jpg", "w=128"), FakeLambdaContext())
    assert response["statusCode"] == 200
    assert response["isBase64Encoded"] is True
    assert response["headers"]["content-type"] == "image/webp"
    assert decoded(base64.b64decode(response["body"])).size == (128, 85)


def test_large_results_redirect_to_a_presigned_url_on_lambda(
    s3: Any,
    media_lambda: Callable[[dict[str, Any], Any], dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import requests

    monkeypatch.setenv("MEDIA_REDIRECT_OVER_BYTES", "2000")  # a stand-in for ~4 MB
    s3.put_object(Bucket=ORIGINALS_BUCKET, Key="big.png", Body=images.photo(fmt="PNG"))
    small = media_lambda(image_event(f"{URL}/big.png", "w=64", "image/jpeg"), FakeLambdaContext())
    assert small["statusCode"] == 200  # under the limit: inline
    for attempt in ("rendered now", "already cached"):
        response = media_lambda(
            image_event(f"{URL}/big.png", "w=1024", "image/png"), FakeLambdaContext()
        )
        assert response["statusCode"] == 302, attempt
        location = response["headers"]["location"]
        assert DERIVATIVES_BUCKET in location
        assert "X-Amz-Expires=300" in location
        assert response["headers"]["cache-control"] == "no-store"
        fetched = requests.get(location, timeout=10)
        assert fetched.status_code == 200
        assert decoded(fetched.content).size == (1024, 683)
        assert len(fetched.content) > 2000


# -- memory --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_peak_memory_resizing_a_24_megapixel_photo(tmp_path: Path) -> None:
    """Draft mode decodes the JPEG at 1/8 scale: the render's peak RSS growth is reported,
    and bounded by the decoded full image (72 MB of RGB), which it never allocates."""
    photo = tmp_path / "originals" / "big.jpg"
    photo.parent.mkdir()
    full_rgb = images.large_photo(photo)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.support.media_memory",
            str(photo),
            str(tmp_path / "c"),
            "512",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": f"{ROOT}:{ROOT / 'layers' / 'common'}", "PATH": "/usr/bin:/bin"},
    )
    measured = json.loads(run.stdout)
    print(  # reported with -s: the figure docs/media.md quotes
        f"\n24 MP JPEG ({measured['original_bytes'] / 1e6:.1f} MB) -> 512 px WebP: peak RSS "
        f"grew {measured['peak_growth'] / 1e6:.1f} MB (full RGB {full_rgb / 1e6:.0f} MB)"
    )
    assert measured["output_bytes"] > 0
    assert measured["peak_growth"] < full_rgb
