"""Images made in the test, with Pillow: photos with EXIF orientation and GPS, transparent
PNGs, a decompression bomb (a PNG header claiming a huge size), truncated and wrong files,
and a large photo for the memory measurement."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import ExifTags, Image

RED, BLUE = (220, 20, 20), (20, 20, 220)


def photo(
    size: tuple[int, int] = (1200, 800),
    *,
    orientation: int | None = None,
    gps: bool = False,
    fmt: str = "JPEG",
) -> bytes:
    """Left half red, right half blue (so orientation is visible), with optional EXIF."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, size[0] // 2, size[1]))
    exif = Image.Exif()
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    if gps:
        exif[ExifTags.Base.Make] = "TestCam"
        ifd = exif.get_ifd(ExifTags.IFD.GPSInfo)
        ifd[ExifTags.GPS.GPSLatitudeRef] = "N"
        ifd[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 29.0)
        ifd[ExifTags.GPS.GPSLongitudeRef] = "E"
        ifd[ExifTags.GPS.GPSLongitude] = (2.0, 17.0, 40.0)
    out = io.BytesIO()
    options: dict[str, object] = {"exif": exif.tobytes()} if len(exif) else {}
    image.save(out, fmt, quality=90, **options) if fmt == "JPEG" else image.save(
        out, fmt, **options
    )
    return out.getvalue()


def transparent_png(size: tuple[int, int] = (400, 400), shade: int = 200) -> bytes:
    """A transparent square with an opaque one inside (``shade`` varies its colour, so that
    several of them are several originals, not one)."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    width, height = size
    image.paste((20, shade, 20, 255), (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming ``width x height`` RGB pixels, with a few bytes of pixel
    data: decoding it would need the full buffer (or fail), checking its header does not."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def tiff() -> bytes:
    """An image of a type Pillow reads but we do not accept."""
    out = io.BytesIO()
    Image.new("RGB", (64, 64), RED).save(out, "TIFF")
    return out.getvalue()


def large_photo(path: Path, size: tuple[int, int] = (6000, 4000)) -> int:
    """A 24-megapixel JPEG with smooth detail (a few MB, as a phone's would be); returns the
    bytes its decoded RGB pixels take at full size."""
    small = Image.effect_noise((size[0] // 10, size[1] // 10), 50)
    noise = small.resize(size, Image.Resampling.BILINEAR)
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.merge("RGB", (noise, gradient, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    image.save(path, "JPEG", quality=88)
    return size[0] * size[1] * 3


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image
