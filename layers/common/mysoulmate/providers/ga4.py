"""Google Analytics 4 through the Measurement Protocol: the `Provider` for ``ga4``.

`ga4_mapping` turns a chunk of messages into requests that respect every documented limit;
this module POSTs them with the standard library (urllib: one JSON POST per request needs
no SDK, and Google publishes no Python client for the Measurement Protocol), once each, in
order, and stops at the first failure:

* 2xx: accepted (GA4 answers 2xx even to what it then drops: the mapping is what keeps
  payloads valid; `Ga4Provider.validate` asks the validation server);
* 429, 5xx, a timeout, a refused or broken connection: `ProviderUnavailableError`, with the
  ``Retry-After`` the server gave;
* any other status (redirects are not followed): `ProviderRejectedError`.

The API secret is a credential: it is only ever in the URL actually requested, never in an
exception message (URLs in messages say ``api_secret=[redacted]``), and no exception raised
here carries the urllib error (whose ``url`` holds it) as its cause or context.

A chunk that fails part-way is sent again by the forwarder; the provider remembers, in
memory, the messages GA4 already accepted (the latest `REMEMBERED`), so a retry in the same
process does not send them twice (the Measurement Protocol does not deduplicate).
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, quote_plus, urlencode, urlsplit

from mysoulmate.alerts.slack import retry_after_seconds
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.providers.base import (
    ForwardResult,
    ProviderRejectedError,
    ProviderUnavailableError,
)
from mysoulmate.providers.ga4_mapping import Key, plan_requests

DEFAULT_ENDPOINT = "https://www.google-analytics.com/mp/collect"
DEFAULT_TIMEOUT = 5.0  # seconds per request; GA4 answers in well under one when healthy
REMEMBERED = 10_000  # accepted message keys kept to skip on a retried chunk
REDACTED = "[redacted]"
_DETAIL_BYTES = 300  # of an error response's body, quoted in a rejection


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would turn the POST into a GET without a body that "succeeds"."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class Ga4Provider:
    """Sends messages to one GA4 web data stream (``measurement_id``)."""

    name = "ga4"
    integration = "Google Analytics 4"

    def __init__(
        self,
        measurement_id: str,
        api_secret: str,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        if not measurement_id or not api_secret:
            raise ValueError("GA4 needs a measurement id and an API secret")
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError("the GA4 endpoint must be an http(s) URL without a query")
        self.measurement_id = measurement_id
        self.endpoint = endpoint
        self.timeout = timeout
        self._api_secret = api_secret
        self._now = now
        self._opener = urllib.request.build_opener(_NoRedirects())
        self._accepted: OrderedDict[Key, None] = OrderedDict()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Ga4Provider(measurement_id={self.measurement_id!r}, endpoint={self.endpoint!r})"

    # -- the Provider protocol ----------------------------------------------------------

    def forward(self, messages: Sequence[QueuedMessage]) -> ForwardResult:
        """Send ``messages``: one attempt per request, in order; raises at the first
        request GA4 did not accept (those before it stay accepted and remembered)."""
        result = ForwardResult()
        fresh: list[QueuedMessage] = []
        with self._lock:
            for message in messages:
                if message.key in self._accepted:
                    result.sent += 1  # accepted by an earlier attempt at this chunk
                else:
                    fresh.append(message)
        plan = plan_requests(fresh, self._now())
        result.skipped.update(plan.skipped)
        for request in plan.requests:
            result.requests += 1
            try:
                self._post(self.endpoint, request.body)
            except ProviderUnavailableError as failure:
                with self._lock:
                    failure.accepted = tuple(m.key for m in messages if m.key in self._accepted)
                raise
            self._remember(request.keys)
            result.sent += len(request.keys)
        return result

    # -- the validation server ----------------------------------------------------------

    def validate(self, messages: Sequence[QueuedMessage]) -> list[dict[str, Any]]:
        """What GA4's validation server (``/debug/mp/collect``, which records nothing) says
        of the requests ``messages`` make: its ``validationMessages``, all requests together
        (empty: valid). For development and the operator, not the forwarding path."""
        debug = self.debug_endpoint()
        found: list[dict[str, Any]] = []
        for request in plan_requests(messages, self._now()).requests:
            answer = self._post(debug, request.body)
            try:
                said = json.loads(answer or b"{}").get("validationMessages", [])
            except (ValueError, AttributeError):
                raise ProviderRejectedError("GA4 validation server: unreadable answer") from None
            found.extend(entry for entry in said if isinstance(entry, dict))
        return found

    def debug_endpoint(self) -> str:
        """The validation server's URL: ``/debug`` before ``/mp/collect``."""
        parts = urlsplit(self.endpoint)
        if not parts.path.endswith("/mp/collect"):
            raise ValueError("the GA4 endpoint does not end with /mp/collect")
        path = parts.path.removesuffix("/mp/collect") + "/debug/mp/collect"
        return parts._replace(path=path).geturl()

    # -- HTTP ---------------------------------------------------------------------------

    def redacted_url(self, endpoint: str | None = None) -> str:
        """The request URL as it may be shown: the API secret replaced."""
        query = urlencode({"measurement_id": self.measurement_id, "api_secret": REDACTED})
        return f"{endpoint or self.endpoint}?{query}"

    def _redact(self, text: str) -> str:
        secret = self._api_secret
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, REDACTED)
        return text

    def _post(self, endpoint: str, body: bytes) -> bytes:
        """One POST of ``body``; the answer's body on 2xx, else raises. The error is raised
        outside every ``except`` block, so it has no urllib error as cause or context."""
        query = urlencode({"measurement_id": self.measurement_id, "api_secret": self._api_secret})
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in __init__)
            f"{endpoint}?{query}",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
        where = f"GA4 request to {self.redacted_url(endpoint)}"
        failure: Exception
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                try:
                    return bytes(response.read())
                except (OSError, http.client.HTTPException):
                    return b""  # the 2xx status is GA4's acceptance; its body is empty
        except urllib.error.HTTPError as error:
            failure = self._http_failure(where, error)
        except urllib.error.URLError as error:
            reason = error.reason
            name = type(reason).__name__ if isinstance(reason, BaseException) else "URLError"
            failure = ProviderUnavailableError(f"{where} failed: {name}")
        except (OSError, http.client.HTTPException) as error:  # timeouts, resets, bad replies
            failure = ProviderUnavailableError(f"{where} failed: {type(error).__name__}")
        raise failure

    def _http_failure(self, where: str, error: urllib.error.HTTPError) -> Exception:
        try:
            detail = error.read(_DETAIL_BYTES).decode("utf-8", "replace").strip()
        except (OSError, http.client.HTTPException):
            detail = ""
        finally:
            error.close()
        status = error.code
        if status == 429 or status >= 500:
            retry_after = retry_after_seconds(error.headers.get("Retry-After"))
            return ProviderUnavailableError(f"{where} answered HTTP {status}", retry_after)
        said = f": {self._redact(detail)}" if detail else ""
        return ProviderRejectedError(f"{where} answered HTTP {status}{said}")

    def _remember(self, keys: Sequence[Key]) -> None:
        with self._lock:
            for key in keys:
                self._accepted[key] = None
                self._accepted.move_to_end(key)
            while len(self._accepted) > REMEMBERED:
                self._accepted.popitem(last=False)
