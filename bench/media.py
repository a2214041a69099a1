"""media: images resized per second through our service vs Pillow called directly, cache-hit
latency through the Lambda handler, and peak memory resizing a 24-megapixel photo.

* **Throughput** (cache misses), on the same generated originals (12-megapixel JPEG photos and
  transparent PNGs), interleaved round by round, one thread:
  * ours: `MediaService.serve` with a fresh cache and service each round (a first request:
    stat, read, sha256, header probe, render, cache write);
  * floor 1, Pillow idiomatic: read the file, `Image.open`, `thumbnail()`, `save` with the same
    encoder and options (thumbnail drafts JPEGs at twice the target);
  * floor 2, Pillow with our steps: `draft` to the target, `resize(reducing_gap=2)`, `save`:
    what the service adds on top of Pillow, alone.
  Goal (issue 19): ours at least 0.8 times the idiomatic floor.
* **Cache hits**: µs per request through `functions/media/app.py` (Mangum, Powertools, local
  stores, the source record in memory): a hit, a 304; floor: a bare FastAPI + Mangum route
  returning the same bytes.
* **Peak memory**: peak RSS growth of a fresh process resizing a 24-megapixel JPEG to 512 and
  2048 px (tests/support/media_memory.py), ours vs decoding the full image first.

Library: Pillow (13, manylinux wheels with libjpeg-turbo, libwebp and libavif inside: nothing to
install on Lambda). pyvips would stream with less memory, but needs libvips in the Lambda image
(Debian has libvips42 8.14; the python3.12 Lambda runtime does not): not used.
"""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import (
    ROOT,
    FakeLambdaContext,
    apply_env,
    lambda_env,
    load_entry_point,
    median,
    per_call_us,
    print_table,
    spread,
    standalone_main,
    summary,
)

GOAL = 0.8
WIDTH = 512
EVENT_FILE = ROOT / "tests" / "events" / "apigw-http-api-proxy.json"


def _originals(directory: Path, quick: bool) -> list[str]:
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    from tests.support.images import large_photo, transparent_png

    keys = []
    for n in range(2 if quick else 4):
        key = f"photo-{n}.jpg"
        large_photo(directory / key, (4000, 3000))
        keys.append(key)
        Image.open(directory / key).verify()
    # Equal originals would share a derivative (a cache hit, not a render): all differ.
    for n in range(1 if quick else 2):
        key = f"logo-{n}.png"
        (directory / key).write_bytes(transparent_png((1600, 1600), shade=100 + n))
        keys.append(key)
    digests = {hashlib.sha256((directory / key).read_bytes()).hexdigest() for key in keys}
    assert len(digests) == len(keys), "two originals are the same image"
    return keys


def _pillow_idiomatic(path: Path) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(path.read_bytes())) as image:
        image.thumbnail((WIDTH, 100_000))
        out = io.BytesIO()
        image.save(out, "WEBP", quality=80, method=4)
        return out.getvalue()


def _pillow_our_steps(path: Path) -> bytes:
    from PIL import Image

    with Image.open(io.BytesIO(path.read_bytes())) as image:
        size = (WIDTH, max(1, round(image.height * WIDTH / image.width)))
        if image.format == "JPEG":
            image.draft(None, size)
        resized = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)
        out = io.BytesIO()
        resized.save(out, "WEBP", quality=80, method=4)
        return out.getvalue()


def throughput(directory: Path, keys: list[str], rounds: int) -> dict[str, Any]:
    from mysoulmate.media.service import ImageQuery, MediaOptions, MediaService
    from mysoulmate.storage.media_local import LocalDerivatives, LocalOriginals

    def ours() -> None:
        cache = Path(tempfile.mkdtemp(prefix="media-bench-cache-"))
        service = MediaService(LocalOriginals(directory), LocalDerivatives(cache), MediaOptions())
        for key in keys:
            service.serve(key, ImageQuery(w=WIDTH), "image/webp")
        shutil.rmtree(cache)

    def floor(render: Callable[[Path], bytes]) -> Callable[[], None]:
        return lambda: [render(directory / key) for key in keys] and None

    runs: dict[str, Callable[[], None]] = {
        "ours: MediaService.serve (cache miss)": ours,
        "floor: Pillow thumbnail()": floor(_pillow_idiomatic),
        "floor: Pillow draft + resize (our steps)": floor(_pillow_our_steps),
    }
    for call in runs.values():  # warm-up: codecs loaded, caches filled
        call()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            gc.collect()
            started = time.perf_counter()
            runs[name]()
            samples[name].append(len(keys) / (time.perf_counter() - started))
    ours_name, idiomatic, steps = names
    ratios = [o / f for o, f in zip(samples[ours_name], samples[idiomatic], strict=True)]
    ratios_steps = [o / f for o, f in zip(samples[ours_name], samples[steps], strict=True)]
    rows = [[name, median(v), *spread(v)] for name, v in samples.items()]
    print_table(
        ["cache miss, 512 px WebP", "images/s", "p25", "p75"],
        rows,
        title=f"Throughput: median of {rounds} rounds x {len(keys)} originals "
        "(12 MP JPEGs, 2.6 MP PNGs with alpha)",
    )
    ratio, ratio_steps = median(ratios), median(ratios_steps)
    verdict = "met" if ratio >= GOAL else f"MISSED ({ratio:.2f} < {GOAL})"
    print(f"ours / Pillow thumbnail(): {ratio:.2f} x (goal >= {GOAL}: {verdict})")
    print(f"ours / Pillow with our steps: {ratio_steps:.2f} x (the service's own overhead)")
    return {
        "images_per_second": {name: summary(v) for name, v in samples.items()},
        "ratio_vs_pillow_thumbnail": ratio,
        "ratio_vs_pillow_same_steps": ratio_steps,
        "goal": GOAL,
        "verdict": verdict,
    }


def _event(path: str, query: str, headers: dict[str, str]) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT_FILE.read_text())
    event.update(routeKey=f"GET {path}", rawPath=path, rawQueryString=query)
    for name in ("cookies", "pathParameters", "stageVariables", "body"):
        event.pop(name, None)
    event["queryStringParameters"] = dict(p.split("=") for p in query.split("&"))
    event["headers"] = {"user-agent": "bench", **headers}
    event["requestContext"]["http"].update(method="GET", path=path)
    event["requestContext"].pop("authorizer", None)
    event["isBase64Encoded"] = False
    return event


def cache_hits(keys: list[str], iterations: int, rounds: int) -> dict[str, Any]:
    from fastapi import FastAPI, Response
    from mangum import Mangum

    handler = load_entry_point("media", "bench").handler
    context = FakeLambdaContext()
    path = f"/api/v1/images/{keys[0]}"
    hit = _event(path, f"w={WIDTH}", {"accept": "image/webp"})
    first = handler(hit, context)
    assert first["statusCode"] == 200, first
    etag = first["headers"]["etag"]
    body = first["body"]
    not_modified = _event(path, f"w={WIDTH}", {"accept": "image/webp", "if-none-match": etag})
    assert handler(not_modified, context)["statusCode"] == 304

    app = FastAPI()
    payload = b"x" * (len(body) * 3 // 4)

    @app.get("/api/v1/images/{key:path}")
    async def bare(key: str) -> Response:
        return Response(payload, media_type="image/webp")

    floor = Mangum(app, lifespan="off")
    calls: dict[str, Callable[[], Any]] = {
        "floor: bare FastAPI+Mangum route, same bytes": lambda: floor(hit, context),
        "media handler: cache hit (200, body)": lambda: handler(hit, context),
        "media handler: 304 (If-None-Match)": lambda: handler(not_modified, context),
    }
    for call in calls.values():
        per_call_us(call, max(50, iterations // 4))
    samples: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names[r % 3 :] + names[: r % 3]:
            gc.collect()
            samples[name].append(per_call_us(calls[name], iterations))
    return {
        "us_per_request": {name: summary(v) for name, v in samples.items()},
        "body_bytes": len(payload),
    }


def memory() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.support.images import large_photo

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="media-bench-mem-") as tmp:
        photo = Path(tmp) / "originals" / "big.jpg"
        photo.parent.mkdir()
        full_rgb = large_photo(photo)
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'layers' / 'common'}"}
        env.pop("AWS_LAMBDA_FUNCTION_NAME", None)
        rows = []
        for width in (512, 2048):
            for mode in ("service", "naive"):
                cache = Path(tmp) / f"cache-{width}-{mode}"
                run = subprocess.run(
                    [sys.executable, "-m", "tests.support.media_memory", str(photo), str(cache)]
                    + [str(width)]
                    + (["naive"] if mode == "naive" else []),
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                measured = json.loads(run.stdout)
                out[f"{mode} {width}"] = measured
                label = "ours (draft)" if mode == "service" else "full decode, then resize"
                rows.append(
                    [
                        f"{label} -> {width} px",
                        measured["peak_growth"] / 1e6,
                        measured["seconds"] * 1000,
                    ]
                )
        print_table(
            ["24 MP JPEG (6000x4000)", "peak RSS growth MB", "ms"],
            rows,
            title=f"Peak memory (fresh process; the full image is {full_rgb / 1e6:.0f} MB as "
            "RGB, Pillow holds it in 4 bytes per pixel)",
        )
    out["full_rgb_bytes"] = full_rgb
    return out


def run(quick: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="media-bench-"))
    originals = workdir / "originals"
    originals.mkdir()
    env = lambda_env("media")
    env.update(
        MEDIA_STORAGE="local",
        MEDIA_ORIGINALS_DIR=str(originals),
        MEDIA_CACHE_DIR=str(workdir / "cache"),
        DATA_DIR=str(workdir),
    )
    apply_env(env)
    os.environ["DATA_DIR"] = str(workdir)
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    from mysoulmate.media.imaging import avif_supported

    keys = _originals(originals, quick)
    print(f"Pillow with AVIF: {avif_supported()}")
    result: dict[str, Any] = {"avif": avif_supported()}
    result["throughput"] = throughput(originals, keys, 3 if quick else 9)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - Powertools prints EMF to stdout
    real_stdout = sys.stdout
    iterations, rounds = (100, 3) if quick else (500, 9)
    try:
        sys.stdout = devnull
        hits = cache_hits(keys, iterations, rounds)
    finally:
        sys.stdout = real_stdout
        devnull.close()
    rows = [[name, s["median"], s["p25"], s["p75"]] for name, s in hits["us_per_request"].items()]
    print_table(
        ["through functions/media/app.py", "µs/req", "p25", "p75"],
        rows,
        title=f"Cache hits ({hits['body_bytes']:,} B WebP): median of {rounds} rounds x "
        f"{iterations} requests",
    )
    result["cache_hits"] = hits
    result["memory"] = memory()
    shutil.rmtree(workdir, ignore_errors=True)
    return result


if __name__ == "__main__":
    standalone_main("media", run)
