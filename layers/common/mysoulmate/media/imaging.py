"""The Pillow pipeline: open an original defensively, decode it at the smallest scale that
still yields the variant, and encode the derivative without its metadata.

Memory is bounded before anything is decoded: only the allowed decoders may open the bytes
(`Image.open(formats=…)`), and the pixel count from the header is checked against
`Limits.max_pixels`. A JPEG is decoded in draft mode (libjpeg's DCT scaling to 1/2, 1/4 or
1/8), so a 24-megapixel photo resized to 512 px never exists at full size in memory. Scaling
uses `resize(reducing_gap=…)`, which reduces by whole factors first, then resamples
(Lanczos) the small image; EXIF orientation is applied to the result, not to the original.
"""

from __future__ import annotations

import io
import math
import re
import struct
from dataclasses import dataclass
from functools import cache

from PIL import ExifTags, Image, UnidentifiedImageError, features

from mysoulmate.media.errors import (
    TooManyPixelsError,
    UnreadableImageError,
    UnsupportedImageTypeError,
)
from mysoulmate.media.rules import ENCODER_OPTIONS, Limits, OutputFormat, Variant

# What a hostile or damaged file can make a decoder raise (Pillow's fuzzing findings).
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
    struct.error,
)
_JPEG = frozenset({"JPEG", "MPO"})  # MPO: phones' JPEGs with a second (depth) picture
_ORIENTATION = ExifTags.Base.Orientation
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_PIL_FORMATS: dict[OutputFormat, str] = {
    "avif": "AVIF",
    "webp": "WEBP",
    "jpeg": "JPEG",
    "png": "PNG",
}
# Reduce by whole factors down to at least twice the output, then resample with Lanczos: the
# quality of a full resample at a fraction of the work. (JPEG's draft goes no lower than the
# output itself: its DCT scaling already averages, and a decoded 2048-px derivative of a
# 24-megapixel photo then needs a quarter of the full image's memory, not all of it.)
REDUCING_GAP = 2.0


@cache
def avif_supported() -> bool:
    """Whether this Pillow can encode (and decode) AVIF (wheels from Pillow 11.3 bundle it)."""
    return bool(features.check("avif"))


@cache
def source_formats() -> tuple[str, ...]:
    """Decoders an original may use: JPEG, PNG, WebP, GIF (first frame), and AVIF and HEIF
    when this installation has them (HEIF needs the pillow-heif plugin registered)."""
    allowed = ["JPEG", "PNG", "WEBP", "GIF"]
    if avif_supported():
        allowed.append("AVIF")
    if "HEIF" in Image.OPEN:
        allowed.append("HEIF")
    return tuple(allowed)


@dataclass(frozen=True)
class Source:
    """What the header says about an original (no pixel decoded)."""

    format: str
    width: int
    height: int
    has_alpha: bool


def probe(data: bytes, limits: Limits) -> Source:
    """The original's type, size and transparency; refuses what `render` would refuse."""
    with _open(data, limits) as image:
        return Source(image.format or "", image.width, image.height, _has_alpha(image))


def render(data: bytes, variant: Variant, fmt: OutputFormat, limits: Limits) -> bytes:
    """The derivative's bytes: oriented, resized into ``variant``, encoded as ``fmt``."""
    with _open(data, limits) as image:
        jpeg = image.format in _JPEG
        orientation = _orientation(image) if jpeg else 1
        if jpeg:
            needed = _decode_size(image.size, variant, orientation)
            image.draft(None, needed)
        _load(image)
        if not jpeg:
            orientation = _orientation(image)  # PNG may keep its EXIF after the pixels
        icc = image.info.get("icc_profile") if image.mode in ("RGB", "RGBA") else None
        pixels = _normalized(image)
        size, box = _geometry(pixels.size, variant, orientation)
        resized = pixels.resize(size, Image.Resampling.LANCZOS, box=box, reducing_gap=REDUCING_GAP)
        if orientation in _TRANSPOSE:
            resized = resized.transpose(_TRANSPOSE[orientation])
        return _encode(resized, fmt, icc if isinstance(icc, bytes) else None)


def _open(data: bytes, limits: Limits) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=source_formats())
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit
        raise TooManyPixelsError(
            pixels=_claimed_pixels(str(exc)), limit=limits.max_pixels
        ) from None
    except UnidentifiedImageError:
        raise UnsupportedImageTypeError(supported=", ".join(source_formats())) from None
    except _DECODE_ERRORS:
        raise UnreadableImageError from None
    width, height = image.size
    if width <= 0 or height <= 0 or width * height > limits.max_pixels:
        image.close()
        raise TooManyPixelsError(
            pixels=width * height,
            limit=limits.max_pixels,
            details={"width": width, "height": height, "maxPixels": limits.max_pixels},
        )
    return image


def _claimed_pixels(message: str) -> str:
    found = re.search(r"\((\d+) pixels\)", message)
    return found.group(1) if found else "?"


def _load(image: Image.Image) -> None:
    try:
        image.load()
    except _DECODE_ERRORS:
        # Truncated ("image file is truncated"), corrupt data, a broken chunk: the original
        # cannot be resized, which is the client's problem to know, not a server error.
        raise UnreadableImageError from None


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_ORIENTATION, 1)
    except _DECODE_ERRORS:
        return 1  # a broken EXIF block: show the pixels as they are stored
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _normalized(image: Image.Image) -> Image.Image:
    """RGB, RGBA, L or LA: the modes Lanczos resampling and every encoder take."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L", "LA") and "transparency" not in image.info:
        return image
    if _has_alpha(image):
        return image.convert("RGBA")
    if mode.startswith("I"):  # 16/32-bit grey: scale to 8 bits instead of clipping
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if mode in ("1", "L"):
        return image.convert("L")
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, F


def _rotated(orientation: int) -> bool:
    return orientation in (5, 6, 7, 8)


def _box(shown: tuple[int, int], variant: Variant) -> tuple[tuple[float, float], float]:
    """In displayed coordinates: the region of the source kept (centred), and the scale."""
    width, height = shown
    if variant.fit == "cover" and variant.height is not None:
        aspect = variant.width / variant.height
        wider = width / height > aspect
        crop = (height * aspect, float(height)) if wider else (float(width), width / aspect)
        return crop, min(1.0, variant.width / crop[0])
    limit = variant.width / width
    if variant.height is not None:
        limit = min(limit, variant.height / height)
    return (float(width), float(height)), min(1.0, limit)


def _decode_size(stored: tuple[int, int], variant: Variant, orientation: int) -> tuple[int, int]:
    """The smallest whole-image size (stored orientation) the draft must not go below."""
    shown = stored[::-1] if _rotated(orientation) else stored
    _, scale = _box(shown, variant)
    factor = min(1.0, scale)
    return (max(1, math.ceil(stored[0] * factor)), max(1, math.ceil(stored[1] * factor)))


def _geometry(
    stored: tuple[int, int], variant: Variant, orientation: int
) -> tuple[tuple[int, int], tuple[float, float, float, float]]:
    """The output size and the crop box, both in stored orientation (transposed later)."""
    rotated = _rotated(orientation)
    shown = stored[::-1] if rotated else stored
    (crop_w, crop_h), _ = _box(shown, variant)
    if variant.fit == "cover" and variant.height is not None:
        # The crop has the box's shape: the box itself, or the crop when it is smaller.
        shrink = min(1.0, crop_w / variant.width)
        out_w, out_h = variant.width * shrink, variant.height * shrink
    else:
        _, scale = _box(shown, variant)
        out_w, out_h = crop_w * scale, crop_h * scale
    size = (max(1, round(out_w)), max(1, round(out_h)))
    if rotated:
        size, crop_w, crop_h = size[::-1], crop_h, crop_w
    left, top = (stored[0] - crop_w) / 2, (stored[1] - crop_h) / 2
    return size, (left, top, left + crop_w, top + crop_h)


def _encode(image: Image.Image, fmt: OutputFormat, icc: bytes | None) -> bytes:
    """No EXIF (GPS, camera, time), XMP or text chunks; the ICC profile stays (colours)."""
    if fmt == "jpeg" and image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.getchannel("A"))
        image = background
    elif fmt in ("webp", "avif") and image.mode in ("L", "LA"):
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    image.info = {}
    options: dict[str, object] = dict(ENCODER_OPTIONS[fmt])
    if icc:
        options["icc_profile"] = icc
    out = io.BytesIO()
    image.save(out, format=_PIL_FORMATS[fmt], **options)
    return out.getvalue()
