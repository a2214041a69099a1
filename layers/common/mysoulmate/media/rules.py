"""The rules of image variants, without the imaging library: which sizes exist, how a request
maps onto them, which format a client gets, and what names and tags a derivative carries.

A fixed ladder of widths bounds what anyone can make us render and cache: every request,
whatever its ``w``, ``preset`` and ``dpr``, lands on one of at most
``len(LADDER) * len(box shapes) * len(fits) * len(formats)`` variants of an original.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from typing import Literal

from mysoulmate.media.errors import (
    InvalidImageKeyError,
    NoAcceptableFormatError,
    WidthNotOfferedError,
)

LADDER: tuple[int, ...] = (64, 128, 256, 512, 768, 1024, 1536, 2048)
MIN_DPR, MAX_DPR = 1.0, 3.0
Fit = Literal["cover", "contain"]
PresetName = Literal["thumb", "avatar", "card", "full"]
OutputFormat = Literal["avif", "webp", "jpeg", "png"]

MEDIA_TYPES: dict[OutputFormat, str] = {
    "avif": "image/avif",
    "webp": "image/webp",
    "jpeg": "image/jpeg",
    "png": "image/png",
}
EXTENSIONS: dict[OutputFormat, str] = {"avif": "avif", "webp": "webp", "jpeg": "jpg", "png": "png"}
# Encoder settings are part of a derivative's identity: changing one renders anew.
# AVIF at speed 8: within ~20 % of speed 6's size at a fifth of its time (bench/media.py).
ENCODER_OPTIONS: dict[OutputFormat, dict[str, int | bool]] = {
    "avif": {"quality": 60, "speed": 8},
    "webp": {"quality": 80, "method": 4},
    "jpeg": {"quality": 82, "progressive": True},
    "png": {"compress_level": 6},
}
# Bumped when the pipeline's output changes for the same inputs (cached derivatives are
# immutable: a new version gives new names and ETags instead of stale bytes).
RENDER_VERSION = 1


@dataclass(frozen=True)
class Preset:
    """A named box: its width in CSS pixels at dpr 1, its shape, and its default fit."""

    width: int
    aspect: tuple[int, int] | None  # width:height of the box; None keeps the original's
    fit: Fit


PRESETS: dict[PresetName, Preset] = {
    "thumb": Preset(128, (1, 1), "cover"),
    "avatar": Preset(256, (1, 1), "cover"),
    "card": Preset(512, (4, 3), "cover"),
    "full": Preset(1024, None, "contain"),
}


@dataclass(frozen=True)
class Limits:
    """What an original may be: bytes read, and pixels decoded (checked from the header)."""

    max_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class Variant:
    """A normalized request: the box (width on the ladder, height or None) and the fit.

    ``contain`` scales the image to fit inside the box; ``cover`` fills the box and crops
    the overflow around the centre. Neither enlarges an original. A box without a height
    has nothing to crop, so its fit is always ``contain`` (one variant, not two).
    """

    width: int
    height: int | None
    fit: Fit

    @property
    def canonical(self) -> str:
        return f"w={self.width};h={self.height or 0};fit={self.fit}"


def snap(width: float) -> int:
    """The smallest ladder width at least ``width`` (the largest when none is)."""
    for step in LADDER:
        if step >= width - 1e-9:
            return step
    return LADDER[-1]


def variant_for(
    w: int | None = None,
    preset: PresetName | None = None,
    dpr: float | None = None,
    fit: Fit | None = None,
) -> Variant:
    """Map the query onto the ladder.

    ``w`` is a width in CSS pixels and must be on the ladder; a preset gives the box shape,
    the default fit and, without ``w``, the width. ``dpr`` (1 to 3) multiplies the width,
    and the product is snapped up to the ladder (capped at its top).
    """
    if w is not None and w not in LADDER:
        raise WidthNotOfferedError(
            width=w, widths=", ".join(map(str, LADDER)), details={"widths": list(LADDER)}
        )
    ratio = 1.0 if dpr is None else dpr
    if not (MIN_DPR <= ratio <= MAX_DPR) or math.isnan(ratio):
        raise ValueError(f"dpr must be within {MIN_DPR}-{MAX_DPR}")  # the route checks first
    chosen = PRESETS[preset] if preset is not None else None
    base = w if w is not None else (chosen or PRESETS["full"]).width
    width = snap(base * ratio)
    height = None
    if chosen is not None and chosen.aspect is not None:
        aw, ah = chosen.aspect
        height = max(1, round(width * ah / aw))
    wanted: Fit = fit or (chosen.fit if chosen is not None else "contain")
    return Variant(width, height, wanted if height is not None else "contain")


# -- keys ------------------------------------------------------------------------------

MAX_KEY_LENGTH = 512
# Segments start with a letter or digit: no "", ".", ".." (or hidden files), no "/" at either
# end, no "//", no backslash, NUL or percent sign. Path traversal cannot be spelled.
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,15}$"
_KEY = re.compile(KEY_PATTERN)


def check_key(key: str) -> str:
    """``key`` when it is a safe relative name; `InvalidImageKeyError` otherwise."""
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise InvalidImageKeyError
    return key


# -- format negotiation ------------------------------------------------------------------


def _accept_ranges(accept: str) -> list[tuple[str, float]]:
    ranges = []
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        if not media:
            continue
        quality = 1.0
        for field in fields[1:]:
            name, _, value = field.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = min(1.0, max(0.0, float(value)))
                except ValueError:
                    quality = 0.0
        ranges.append((media, quality))
    return ranges


def _quality(media_type: str, ranges: list[tuple[str, float]], *, explicit: bool) -> float:
    """RFC 9110 §12.5.1: the most specific range that matches decides. An ``explicit``
    type is matched by its own name only: ``*/*`` and ``image/*`` are sent by clients that
    cannot decode AVIF or WebP, so those are served only to clients that name them."""
    kind = media_type.split("/", 1)[0]
    best, specificity = 0.0, -1
    for media, quality in ranges:
        if media == media_type:
            level = 2
        elif media == f"{kind}/*" and not explicit:
            level = 1
        elif media == "*/*" and not explicit:
            level = 0
        else:
            continue
        if level > specificity:
            best, specificity = quality, level
        elif level == specificity:
            best = max(best, quality)
    return best


_MODERN = frozenset({"avif", "webp"})


def negotiate(accept: str | None, *, has_alpha: bool, avif: bool) -> OutputFormat:
    """The best format the client accepts: the highest q, ties broken by our preference
    (AVIF when this Pillow can encode it, WebP, then JPEG for opaque images and PNG for
    images with transparency). AVIF and WebP must be named in Accept; JPEG and PNG are also
    matched by wildcards. No Accept header means JPEG or PNG; none acceptable is 406."""
    preference: list[OutputFormat] = ["avif"] if avif else []
    preference += ["webp", "png", "jpeg"] if has_alpha else ["webp", "jpeg", "png"]
    if not accept or not accept.strip():
        return "png" if has_alpha else "jpeg"  # what a client that states nothing decodes
    ranges = _accept_ranges(accept)
    scored = [
        (_quality(MEDIA_TYPES[f], ranges, explicit=f in _MODERN), -i, f)
        for i, f in enumerate(preference)
    ]
    quality, _, chosen = max(scored)
    if quality <= 0:
        raise NoAcceptableFormatError(details={"offered": [MEDIA_TYPES[f] for f in preference]})
    return chosen


# -- names and tags ----------------------------------------------------------------------


def derivative_key(digest: str, variant: Variant, fmt: OutputFormat) -> str:
    """sha256 of the original's content hash and everything that shapes the output."""
    options = ",".join(f"{k}={v}" for k, v in sorted(ENCODER_OPTIONS[fmt].items()))
    canonical = f"v{RENDER_VERSION}|{digest}|{variant.canonical}|{fmt}|{options}"
    return hashlib.sha256(canonical.encode()).hexdigest()


def derivative_name(key: str, fmt: OutputFormat) -> str:
    """Where a derivative is cached: fanned out by its first two hex digits."""
    return f"{key[:2]}/{key}.{EXTENSIONS[fmt]}"


def etag_of(key: str) -> str:
    return f'"{key}"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 §13.1.2): W/ prefixes ignored."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
    return etag in tags
