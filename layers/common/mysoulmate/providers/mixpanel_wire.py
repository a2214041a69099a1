"""The official Mixpanel library's consumers, made to say what went wrong and how often.

Imported only by `MixpanelProvider`'s constructor, so nothing loads the library (nor
requests) unless MIXPANEL_TOKEN is set.

The library hides what the forwarder needs: `mixpanel.Consumer` raises a bare
`MixpanelException` for every failure (the HTTP status and ``Retry-After`` are lost), its
HTTPS adapter turns a 5xx into an opaque ``RetryError`` even with ``retry_limit=0``, and
`mixpanel.BufferedConsumer` sends the API secret of whichever call came last. So
`WireConsumer` subclasses `Consumer`: it remounts a plain adapter (one attempt, no status
retries), remembers each response through a requests response hook, counts requests, sends
the API secret to /import only, and turns failures into `ProviderUnavailableError` /
`ProviderRejectedError` whose text never holds the token or the secret. It overrides the
library's ``_write_request`` (5.x): the integration tests pin that behaviour.
"""

from __future__ import annotations

from typing import Any

import mixpanel  # type: ignore[import-untyped]
import requests
from requests.adapters import HTTPAdapter

from mysoulmate.providers.base import ProviderRejectedError, ProviderUnavailableError
from mysoulmate.providers.mixpanel_mapping import base_url, failure_for_status, scrub

BATCH_SIZE = 50  # BufferedConsumer's (and /engage's traditional) maximum per request
_PATHS = {"events": "/track", "people": "/engage", "groups": "/groups", "imports": "/import"}


class WireConsumer(mixpanel.Consumer):  # type: ignore[misc]  # the library is untyped
    """One per provider (one session, so connections are kept alive between chunks)."""

    def __init__(self, token: str, api_host: str, api_secret: str, timeout: float) -> None:
        base = base_url(api_host)
        super().__init__(
            events_url=f"{base}/track",
            people_url=f"{base}/engage",
            import_url=f"{base}/import",
            groups_url=f"{base}/groups",
            request_timeout=timeout,
            retry_limit=0,
        )
        # One attempt, and a 5xx is a response we can read (the library's adapter has a
        # status retry list that, even at total=0, raises RetryError instead).
        for prefix in ("https://", "http://"):
            self._session.mount(prefix, HTTPAdapter(max_retries=0))
        self._session.hooks["response"].append(self._remember)
        self._secrets = (token, api_secret)
        self._api_secret = api_secret or None
        self._response: requests.Response | None = None
        self.requests = 0

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self._response = response

    def _write_request(
        self,
        request_url: str,
        json_message: str,
        api_key: Any = None,
        api_secret: Any = None,
        endpoint: str | None = None,
    ) -> bool:
        secret = self._api_secret if endpoint == "imports" else None
        self._response = None
        self.requests += 1
        failure: ProviderUnavailableError | ProviderRejectedError | None = None
        try:
            super()._write_request(request_url, json_message, None, secret, endpoint)
        except (mixpanel.MixpanelException, KeyError, TypeError) as error:
            # KeyError/TypeError: the library reads a JSON answer without "status".
            if not _accepted(self._response):
                failure = self._failure(endpoint, error)
        else:
            response = self._response
            if response is not None and not 200 <= response.status_code < 300:
                failure = self._failure(endpoint, None)
        if failure is not None:
            # Raised here, outside the handler: no __context__ holding the library's error
            # (whose text may quote the answer, and whose batch holds the token).
            raise failure
        return True

    def _failure(
        self, endpoint: str | None, error: BaseException | None
    ) -> ProviderUnavailableError | ProviderRejectedError:
        what = f"Mixpanel {_PATHS.get(endpoint or '', endpoint)}"
        response = self._response
        if response is None:  # no answer: refused, reset, timed out, DNS…
            cause = error.__cause__ if error is not None else None
            return ProviderUnavailableError(f"{what}: {type(cause or error).__name__}")
        status = response.status_code
        body = _json(response)
        if 200 <= status < 300 and not isinstance(body, dict):
            # A 2xx we cannot read came from something in between, not from Mixpanel.
            return ProviderUnavailableError(
                f"{what} answered HTTP {status} with an unreadable body"
            )
        detail = body.get("error") if isinstance(body, dict) else None
        text = detail if isinstance(detail, str) else response.text
        return failure_for_status(
            what, status, response.headers.get("Retry-After"), scrub(text, self._secrets)
        )


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _accepted(response: requests.Response | None) -> bool:
    """A 2xx whose body says OK in /import's current words (``"status": "OK"``, ``"code":
    200``) rather than the ``"status": 1`` the library checks for."""
    if response is None or not 200 <= response.status_code < 300:
        return False
    body = _json(response)
    if not isinstance(body, dict):
        return False
    status = body.get("status")
    return (isinstance(status, str) and status.lower() == "ok") or body.get("code") == 200


class ChunkConsumer(mixpanel.BufferedConsumer):  # type: ignore[misc]  # untyped library
    """The library's batching (at most `BATCH_SIZE` messages per request and endpoint),
    one per `forward` call, over the provider's `WireConsumer`."""

    def __init__(self, wire: WireConsumer) -> None:
        super().__init__(
            max_size=BATCH_SIZE,
            events_url=wire._endpoints["events"],
            people_url=wire._endpoints["people"],
            import_url=wire._endpoints["imports"],
            groups_url=wire._endpoints["groups"],
            request_timeout=wire._request_timeout,
            retry_limit=0,
        )
        self._consumer = wire


def client(token: str, consumer: ChunkConsumer) -> Any:
    """The library's `Mixpanel` client writing into ``consumer``."""
    return mixpanel.Mixpanel(token, consumer=consumer)
