"""Why an image request is refused, as `ApiError`s with stable codes (messages in the
catalogs under ``errors.<code>``): the API's one error envelope, free of any web framework."""

from __future__ import annotations

from mysoulmate.core.errors import ApiError, ForbiddenError, InvalidRequestError, NotFoundError


class InvalidImageKeyError(InvalidRequestError):
    """A key outside the safe form (the route checks it first; adapters check again)."""

    def __init__(self) -> None:
        super().__init__(details=[{"field": "key", "type": "invalid_image_key"}], fields="key")


class WidthNotOfferedError(ApiError):
    status_code = 400
    code = "invalid_width"


class ImageNotFoundError(NotFoundError):
    code = "image_not_found"


class ImageTooLargeError(ApiError):
    status_code = 413
    code = "image_too_large"


class TooManyPixelsError(ApiError):
    status_code = 422
    code = "image_too_many_pixels"


class UnreadableImageError(ApiError):
    status_code = 422
    code = "image_unreadable"


class UnsupportedImageTypeError(ApiError):
    status_code = 422
    code = "image_type_unsupported"


class NoAcceptableFormatError(ApiError):
    status_code = 406
    code = "not_acceptable"


class SignatureRequiredError(ForbiddenError):
    code = "signature_required"


class InvalidSignatureError(ForbiddenError):
    code = "invalid_signature"


class SignatureExpiredError(ForbiddenError):
    code = "signature_expired"
