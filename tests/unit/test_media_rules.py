"""The media domain's rules, without a server: the ladder, presets and dpr, fits and their
output sizes, format negotiation, keys, tags, signatures, and the limits on originals."""

from __future__ import annotations

import io

import pytest
from mysoulmate.media import imaging, signing
from mysoulmate.media.errors import (
    InvalidImageKeyError,
    InvalidSignatureError,
    NoAcceptableFormatError,
    SignatureExpiredError,
    SignatureRequiredError,
    TooManyPixelsError,
    UnreadableImageError,
    UnsupportedImageTypeError,
    WidthNotOfferedError,
)
from mysoulmate.media.rules import (
    LADDER,
    Limits,
    Variant,
    check_key,
    derivative_key,
    etag_matches,
    negotiate,
    snap,
    variant_for,
)
from PIL import Image

from tests.support import images

# -- ladder, presets, dpr ------------------------------------------------------------------


def test_widths_snap_up_to_the_ladder_and_stop_at_its_top() -> None:
    assert [snap(w) for w in (1, 64, 65, 300, 1024, 1025, 2048, 9000)] == [
        64,
        64,
        128,
        512,
        1024,
        1536,
        2048,
        2048,
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"w": 512}, Variant(512, None, "contain")),
        ({"w": 512, "dpr": 2}, Variant(1024, None, "contain")),
        ({"w": 512, "dpr": 3}, Variant(1536, None, "contain")),
        ({"w": 2048, "dpr": 3}, Variant(2048, None, "contain")),
        ({}, Variant(1024, None, "contain")),  # the full preset
        ({"preset": "thumb"}, Variant(128, 128, "cover")),
        ({"preset": "thumb", "dpr": 1.5}, Variant(256, 256, "cover")),
        ({"preset": "thumb", "dpr": 3}, Variant(512, 512, "cover")),
        ({"preset": "avatar", "dpr": 2}, Variant(512, 512, "cover")),
        ({"preset": "card"}, Variant(512, 384, "cover")),
        ({"preset": "card", "dpr": 2}, Variant(1024, 768, "cover")),
        ({"preset": "card", "fit": "contain"}, Variant(512, 384, "contain")),
        ({"preset": "full", "dpr": 2}, Variant(2048, None, "contain")),
        ({"preset": "avatar", "w": 64}, Variant(64, 64, "cover")),
        # a box without a height has nothing to crop: one variant, not two
        ({"w": 256, "fit": "cover"}, Variant(256, None, "contain")),
    ],
)
def test_every_query_lands_on_the_ladder(query: dict[str, object], expected: Variant) -> None:
    assert variant_for(**query) == expected  # type: ignore[arg-type]


def test_a_width_off_the_ladder_is_refused_naming_the_ladder() -> None:
    with pytest.raises(WidthNotOfferedError) as refused:
        variant_for(w=500)
    assert refused.value.status_code == 400
    assert refused.value.params["widths"] == ", ".join(map(str, LADDER))
    assert refused.value.details == {"widths": list(LADDER)}


def test_the_number_of_variants_is_bounded() -> None:
    variants = {
        variant_for(w, preset, dpr, fit)  # type: ignore[arg-type]
        for w in (None, *LADDER)
        for preset in (None, "thumb", "avatar", "card", "full")
        for dpr in (1, 1.25, 1.5, 2, 2.5, 3)
        for fit in (None, "cover", "contain")
    }
    # 8 widths x (no height, square, 4:3 x two fits)
    assert len(variants) <= len(LADDER) * 5


# -- output sizes: cover fills and crops, contain fits, neither enlarges -----------------


def rendered(data: bytes, variant: Variant, fmt: str = "png") -> Image.Image:
    return images.opened(imaging.render(data, variant, fmt, Limits()))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("variant", "size"),
    [
        (Variant(512, None, "contain"), (512, 341)),
        (Variant(512, 384, "contain"), (512, 341)),
        (Variant(512, 384, "cover"), (512, 384)),
        (Variant(256, 256, "cover"), (256, 256)),
        (Variant(256, 256, "contain"), (256, 171)),
        (Variant(2048, None, "contain"), (1200, 800)),  # never enlarged
        (Variant(2048, 2048, "cover"), (800, 800)),  # the largest square the source has
    ],
)
def test_cover_and_contain_sizes(variant: Variant, size: tuple[int, int]) -> None:
    assert rendered(images.photo((1200, 800)), variant).size == size


def test_cover_crops_around_the_centre() -> None:
    # Left half red, right half blue: a centred square crop keeps both halves equally.
    out = rendered(images.photo((1200, 400)), Variant(128, 128, "cover")).convert("RGB")
    left, right = out.getpixel((5, 64)), out.getpixel((122, 64))
    assert isinstance(left, tuple)
    assert isinstance(right, tuple)
    assert left[0] > 150 > left[2]
    assert right[2] > 150 > right[0]


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_is_applied(orientation: int) -> None:
    data = images.photo((400, 200), orientation=orientation)
    out = rendered(data, Variant(128, None, "contain")).convert("RGB")
    assert out.size == (128, 256)  # shown upright: portrait, 128 wide
    top, bottom = out.getpixel((64, 5)), out.getpixel((64, 250))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    # 6 turns the stored left (red) edge to the top; 8 turns it to the bottom.
    red_on_top = orientation == 6
    assert (top[0] > top[2]) is red_on_top
    assert (bottom[0] > bottom[2]) is not red_on_top


def test_exif_and_gps_are_stripped() -> None:
    data = images.photo((400, 300), orientation=3, gps=True)
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(0x8825)  # the original has GPS
    for fmt in ("jpeg", "webp", "png", "avif"):
        if fmt == "avif" and not imaging.avif_supported():
            continue
        body = imaging.render(data, Variant(128, None, "contain"), fmt, Limits())  # type: ignore[arg-type]
        out = Image.open(io.BytesIO(body))
        assert not out.getexif(), fmt
        assert "exif" not in out.info, fmt
        assert b"Exif\x00\x00" not in body, fmt
        assert b"TestCam" not in body, fmt


def test_transparency_survives_into_png_and_is_flattened_into_jpeg() -> None:
    data = images.transparent_png()
    png = rendered(data, Variant(64, None, "contain"), "png")
    assert png.mode == "RGBA"
    corner = png.getpixel((0, 0))
    assert isinstance(corner, tuple)
    assert corner[3] == 0
    jpeg = rendered(data, Variant(64, None, "contain"), "jpeg")
    assert jpeg.mode == "RGB"
    assert jpeg.getpixel((0, 0)) == pytest.approx((255, 255, 255), abs=3)


def test_a_gif_gives_its_first_frame() -> None:
    frames = [Image.new("P", (100, 50), color) for color in (1, 2, 3)]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:])
    assert rendered(out.getvalue(), Variant(64, None, "contain")).size == (64, 32)


# -- limits on originals ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [(10_000, 6_000), (100_000, 100_000)])
def test_a_decompression_bomb_is_refused_from_its_header(size: tuple[int, int]) -> None:
    # 60 MP is over our 50 MP but under Pillow's own limit; 10^10 is over both.
    with pytest.raises(TooManyPixelsError) as refused:
        imaging.probe(images.bomb_png(*size), Limits())
    assert refused.value.status_code == 422


def test_the_pixel_limit_is_configurable() -> None:
    with pytest.raises(TooManyPixelsError):
        imaging.render(
            images.photo((400, 300)),
            Variant(64, None, "contain"),
            "png",
            Limits(max_pixels=100_000),
        )


def test_truncated_and_foreign_files_are_refused() -> None:
    with pytest.raises(UnreadableImageError):
        imaging.render(
            images.truncated(images.photo()), Variant(64, None, "contain"), "png", Limits()
        )
    with pytest.raises(UnsupportedImageTypeError):
        imaging.probe(b"just some text, not an image", Limits())
    with pytest.raises(UnsupportedImageTypeError):
        imaging.probe(images.tiff(), Limits())  # Pillow reads TIFF; we do not accept it


# -- negotiation -------------------------------------------------------------------------------

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


@pytest.mark.parametrize(
    ("accept", "alpha", "avif", "chosen"),
    [
        (CHROME, False, True, "avif"),
        (CHROME, False, False, "webp"),  # a Pillow without AVIF says so
        ("image/webp,*/*", False, True, "webp"),
        ("image/jpeg", False, True, "jpeg"),
        ("image/png", False, True, "png"),
        ("image/*", True, False, "png"),  # wildcards never mean AVIF or WebP
        ("*/*", False, True, "jpeg"),
        ("image/avif;q=0, image/webp;q=0, image/*", False, True, "jpeg"),
        ("image/avif;q=0, image/webp;q=0, image/*", True, True, "png"),
        ("image/webp;q=0.5, image/jpeg", False, True, "jpeg"),  # the higher q wins
        (None, False, True, "jpeg"),
        (None, True, True, "png"),
        ("", False, True, "jpeg"),
    ],
)
def test_format_negotiation(accept: str | None, alpha: bool, avif: bool, chosen: str) -> None:
    assert negotiate(accept, has_alpha=alpha, avif=avif) == chosen


def test_nothing_acceptable_is_406() -> None:
    with pytest.raises(NoAcceptableFormatError) as refused:
        negotiate("application/json", has_alpha=False, avif=True)
    assert refused.value.status_code == 406


# -- keys, names, tags -------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["a.jpg", "users/42/avatar.png", "x-1_2.webp", "A/B/C/d"])
def test_safe_keys_pass(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../etc/passwd",
        "a/../../b",
        "/etc/passwd",
        "a//b",
        "a/",
        ".hidden",
        "a/./b",
        "a\\b",
        "a\x00b",
        "a%2e%2e",
        "ä.jpg",
        "_derivatives/ab/x.webp",
        "x" * 513,
    ],
)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidImageKeyError):
        check_key(key)


def test_the_derivative_key_changes_with_everything_that_shapes_the_output() -> None:
    base = derivative_key("d" * 64, Variant(512, None, "contain"), "webp")
    assert len(base) == 64
    assert base == derivative_key("d" * 64, Variant(512, None, "contain"), "webp")
    others = {
        derivative_key("e" * 64, Variant(512, None, "contain"), "webp"),
        derivative_key("d" * 64, Variant(768, None, "contain"), "webp"),
        derivative_key("d" * 64, Variant(512, 384, "contain"), "webp"),
        derivative_key("d" * 64, Variant(512, 384, "cover"), "webp"),
        derivative_key("d" * 64, Variant(512, None, "contain"), "avif"),
    }
    assert base not in others
    assert len(others) == 5


def test_if_none_match_uses_the_weak_comparison() -> None:
    assert etag_matches('"abc"', '"abc"')
    assert etag_matches('W/"abc"', '"abc"')
    assert etag_matches('"x", "abc"', '"abc"')
    assert etag_matches("*", '"abc"')
    assert not etag_matches('"abd"', '"abc"')
    assert not etag_matches(None, '"abc"')


# -- signatures ----------------------------------------------------------------------------------

SECRET = "media-secret"
NOW = 1_800_000_000


def test_a_signed_url_verifies_until_it_expires() -> None:
    params = {"preset": "card", "dpr": 2}
    query = signing.sign(SECRET, "a.jpg", params, NOW + 60)
    verify = signing.verify
    verify(SECRET, "a.jpg", params, query["sig"], int(query["exp"]), now=NOW, required=True)
    # dpr=2 and dpr=2.0 are the same request
    same = {"preset": "card", "dpr": 2.0}
    verify(SECRET, "a.jpg", same, query["sig"], int(query["exp"]), now=NOW, required=True)
    with pytest.raises(SignatureExpiredError):
        verify(SECRET, "a.jpg", params, query["sig"], NOW + 60, now=NOW + 61, required=True)


@pytest.mark.parametrize(
    ("key", "params", "exp"),
    [
        ("b.jpg", {"preset": "card", "dpr": 2}, NOW + 60),  # another image
        ("a.jpg", {"preset": "full", "dpr": 2}, NOW + 60),  # another size
        ("a.jpg", {"preset": "card"}, NOW + 60),  # a parameter dropped
        ("a.jpg", {"preset": "card", "dpr": 2}, NOW + 3600),  # a later expiry
    ],
)
def test_a_tampered_url_is_refused(key: str, params: dict[str, object], exp: int) -> None:
    sig = signing.sign(SECRET, "a.jpg", {"preset": "card", "dpr": 2}, NOW + 60)["sig"]
    with pytest.raises(InvalidSignatureError):
        signing.verify(SECRET, key, params, sig, exp, now=NOW, required=False)


def test_signing_required_refuses_an_unsigned_url() -> None:
    with pytest.raises(SignatureRequiredError):
        signing.verify(SECRET, "a.jpg", {}, None, None, now=NOW, required=True)
    signing.verify(SECRET, "a.jpg", {}, None, None, now=NOW, required=False)
    with pytest.raises(InvalidSignatureError):  # half a signature is no signature
        signing.verify(SECRET, "a.jpg", {}, None, NOW + 5, now=NOW, required=False)
