"""`python -m tests.support.media_memory PHOTO CACHE_DIR WIDTH [naive]`: resize one original
through the media service (or, with ``naive``, with Pillow decoding the whole image and then
resizing it, the way without draft mode) in a fresh process and print, as JSON, how much the
peak resident set grew.

Run as a subprocess by the test and the benchmark: the parent's memory (and the making of the
24-megapixel photo) must not count. The peak (VmHWM) is reset once the modules are imported
and the original's bytes are in memory, so what it then measures is the render's own growth.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def main(photo: Path, cache: Path, width: int, naive: bool = False) -> dict[str, float]:
    from mysoulmate.media import imaging
    from mysoulmate.media.service import ImageQuery, MediaOptions, MediaService
    from mysoulmate.storage.media_local import LocalDerivatives, LocalOriginals

    imaging.avif_supported()  # load Pillow and its codecs before measuring
    service = MediaService(LocalOriginals(photo.parent), LocalDerivatives(cache), MediaOptions())
    original = photo.read_bytes()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak to the current RSS
    before = _status("VmRSS")
    started = time.perf_counter()
    if naive:
        body = _naive(original, width)
    else:
        body = service.serve(photo.name, ImageQuery(w=width), "image/webp").body
    seconds = time.perf_counter() - started
    peak = _status("VmHWM")
    return {
        "original_bytes": len(original),
        "output_bytes": len(body),
        "rss_before": before,
        "peak_rss": peak,
        "peak_growth": peak - before,
        "seconds": seconds,
    }


def _naive(original: bytes, width: int) -> bytes:
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(original))
    image.load()
    height = round(image.height * width / image.width)
    out = io.BytesIO()
    image.resize((width, height), Image.Resampling.LANCZOS).save(out, "WEBP", quality=80)
    return out.getvalue()


if __name__ == "__main__":
    naive = sys.argv[4:5] == ["naive"]
    print(json.dumps(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), naive)))
