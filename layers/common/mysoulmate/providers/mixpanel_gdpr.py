"""Asking Mixpanel to delete a person's data (its GDPR API v3, "Create a Deletion Task").

``POST {app}/api/app/data-deletions/v3.0/?token=<project token>`` with ``Authorization:
Bearer <GDPR OAuth token>`` and ``{"distinct_ids": [...], "compliance_type": "GDPR"}``;
Mixpanel answers ``{"status": "ok", "results": {"task_id": "..."}}`` and deletes within 30
days. The app API lives on ``mixpanel.com`` (``eu.mixpanel.com``, ``in.mixpanel.com`` for
data residency), not on the ingestion host. Standard-library HTTP: one request, no SDK.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

from mysoulmate.analytics.gdpr import ErasureHook
from mysoulmate.observability import get_logger
from mysoulmate.providers.base import ProviderRejectedError, ProviderUnavailableError
from mysoulmate.providers.mixpanel_mapping import failure_for_status, person_distinct_ids, scrub

DELETIONS_PATH = "/api/app/data-deletions/v3.0/"
MAX_DISTINCT_IDS = 1999  # per deletion task (Mixpanel's documented limit)
_APP_HOSTS = {
    "api-eu.mixpanel.com": "https://eu.mixpanel.com",
    "api-in.mixpanel.com": "https://in.mixpanel.com",
}


def app_base_url(api_host: str) -> str:
    """The app API for an ingestion host: ``api-eu.mixpanel.com`` → ``https://eu.mixpanel.com``,
    any other host name → ``https://mixpanel.com``; a full base URL is used as given."""
    host = api_host.strip().rstrip("/")
    if host.startswith(("http://", "https://")):
        return host
    return _APP_HOSTS.get(host.lower(), "https://mixpanel.com")


def delete_user_data(
    distinct_ids: Sequence[str],
    gdpr_token: str,
    *,
    project_token: str,
    api_host: str = "api.mixpanel.com",
    compliance_type: Literal["GDPR", "CCPA"] = "GDPR",
    timeout: float = 10.0,
) -> str:
    """Create a deletion task for ``distinct_ids`` (see `mixpanel_mapping.person_distinct_ids`)
    and return its task id. Raises `ProviderUnavailableError` (no answer, 408, 429 with
    ``retry_after``, 5xx, an unreadable answer) or `ProviderRejectedError` (other 4xx)."""
    ids = list(dict.fromkeys(distinct_ids))
    if not ids or len(ids) > MAX_DISTINCT_IDS:
        raise ValueError(f"a deletion task takes 1 to {MAX_DISTINCT_IDS} distinct ids")
    url = f"{app_base_url(api_host)}{DELETIONS_PATH}?token={quote(project_token, safe='')}"
    body = json.dumps({"distinct_ids": ids, "compliance_type": compliance_type}).encode()
    request = urllib.request.Request(  # noqa: S310 - app_base_url: http(s) only
        url,
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer {gdpr_token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
    )
    secrets = (gdpr_token, project_token)
    what = "Mixpanel data deletion"
    failure: ProviderUnavailableError | ProviderRejectedError | None = None
    answer = b""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            answer = response.read()
    except urllib.error.HTTPError as error:
        try:
            text = error.read().decode("utf-8", "replace")
        finally:
            error.close()
        detail = scrub(_error_text(text), secrets)
        failure = failure_for_status(what, error.code, error.headers.get("Retry-After"), detail)
    except (OSError, ValueError) as error:  # URLError, timeouts, resets
        failure = ProviderUnavailableError(f"{what}: {type(error).__name__}")
    if failure is not None:
        raise failure  # outside the handler: no __context__ (its URL holds the token)
    task_id = _task_id(answer)
    if task_id is None:
        raise ProviderUnavailableError(f"{what}: the answer holds no task id")
    return task_id


def _error_text(text: str) -> str:
    try:
        body: Any = json.loads(text)
    except ValueError:
        return text
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return str(body["error"])
    return text


def _task_id(answer: bytes) -> str | None:
    try:
        body: Any = json.loads(answer)
    except ValueError:
        return None
    results = body.get("results") if isinstance(body, dict) else None
    task_id = results.get("task_id") if isinstance(results, dict) else None
    if isinstance(task_id, str | int) and not isinstance(task_id, bool) and str(task_id):
        return str(task_id)
    return None


def erasure_hook(project_token: str, gdpr_token: str, api_host: str) -> ErasureHook:
    """What an erasure asks of Mixpanel: a deletion task for every id the person was sent
    under; the answer (task id, or why it failed) goes into the erasure's audit entry."""

    def erase_in_mixpanel(user_id: str, anonymous_ids: list[str]) -> dict[str, Any]:
        distinct_ids = person_distinct_ids(user_id, anonymous_ids)
        try:
            task = delete_user_data(
                distinct_ids,
                gdpr_token,
                project_token=project_token,
                api_host=api_host,
                timeout=5.0,
            )
        except (ProviderUnavailableError, ProviderRejectedError) as exc:
            get_logger().warning("mixpanel deletion request failed", extra={"reason": str(exc)})
            return {"mixpanel": {"deletion": "failed", "reason": str(exc)[:300]}}
        return {"mixpanel": {"deletion": "requested", "taskId": task, "ids": len(distinct_ids)}}

    return erase_in_mixpanel
