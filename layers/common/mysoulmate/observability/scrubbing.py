"""Removing secrets and personal data from anything about to leave the process.

Pure Python with no Sentry import, so it costs nothing until used and is tested on its own.
Two rules, applied recursively to every dict, list and string of an event, breadcrumb or
transaction:

* **by name**: the value of any key that names a secret or personal datum (password, token,
  API key, secret, Authorization, Cookie, session, email, phone, IP address, …) is replaced
  whole, whatever its type;
* **by shape**: inside every string (exception messages, log messages, URLs, query strings,
  headers under innocent names, JSON or ``repr`` text), JWTs, ``Bearer``/``Basic``
  credentials, ``name=value`` / ``"name": "value"`` pairs with a sensitive name, credentials
  in URLs, well-known key formats (AWS access keys, Slack tokens and webhooks), email
  addresses, phone numbers and IPv4 addresses are replaced.

False positives (a harmless value filtered) are accepted; false negatives are the defect.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FILTERED = "[Filtered]"

# A key is sensitive when its lower-cased, alphanumeric-only form contains one of these…
_SENSITIVE_FRAGMENTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "authorization",
    "cookie",
    "session",
    "csrf",
    "xsrf",
    "credential",
    "signature",
    "email",
    "phone",
    "mobile",
    "msisdn",
    "ipaddress",
    "remoteaddr",
    "forwardedfor",
    "realip",
    "clientip",
    "sourceip",
    "connectingip",
    "creditcard",
    "cardnumber",
    "iban",
)
# … or is exactly one of these (too short to match as fragments without false hits).
_SENSITIVE_KEYS = frozenset(
    {"pwd", "pass", "pin", "otp", "cvv", "ssn", "auth", "jwt", "bearer", "ip", "forwarded", "dsn"}
)
# Event metadata whose values are identifiers, not content: left exactly as they are.
_STRUCTURAL_KEYS = frozenset(
    {
        "event_id",
        "trace_id",
        "span_id",
        "parent_span_id",
        "profile_id",
        "timestamp",
        "start_timestamp",
        "lineno",
        "colno",
        "abs_path",
        "filename",
        "module",
        "function",
        "instruction_addr",
        "sdk",
    }
)

_NAME = (
    r"(?:password|passwd|passphrase|pwd|secret|client[_-]?secret|[a-z_-]*token|"
    r"api[_-]?key|x-api-key|access[_-]?key(?:[_-]?id)?|private[_-]?key|authorization|"
    r"cookie|set-cookie|session(?:[_-]?id)?|csrf|xsrf|signature|sig|credentials?|"
    r"e-?mail|phone(?:[_-]?number)?|mobile|msisdn|dsn)"
)
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Credentials in URLs: scheme://user:password@host
    (re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@"), FILTERED + "@"),
    # Slack incoming-webhook URLs are credentials in themselves.
    (re.compile(r"https://hooks\.slack\.com/[^\s\"'<>]+"), FILTERED),
    # JWTs (header.payload.signature, base64url; the header always starts with eyJ).
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), FILTERED),
    # Authorization schemes followed by their credential ("basic" only when it is followed
    # by base64 holding a digit or padding, so that English "basic validation" stays).
    (re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1\2" + FILTERED),
    (
        re.compile(r"\b(Basic|Digest)(\s+)(?=[A-Za-z+/=]*[0-9+/=])[A-Za-z0-9+/]{6,}={0,2}"),
        r"\1\2" + FILTERED,
    ),
    # name=value, name: value, "name": "value", 'name': 'value' with a sensitive name
    # (query strings, form bodies, headers in text, JSON and repr text, log messages).
    (
        re.compile(
            r"(?i)(?<![A-Za-z0-9])(" + _NAME + r")(\"|')?(\s*[:=]\s*)(\"|'|b')?"
            r"(?!\[Filtered\])[^\s&\"',;}\])]+"
        ),
        r"\1\2\3\4" + FILTERED,
    ),
    # Well-known secret formats that carry no name.
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), FILTERED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), FILTERED),
    (re.compile(r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,}"), FILTERED),
    # Email addresses, also URL-encoded (%40).
    (
        re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
        FILTERED,
    ),
    # IPv4 addresses (never sent: not in user context, not anywhere).
    (
        re.compile(
            r"(?<![\w.:/-])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)"
            r"(?![\w.])"
        ),
        FILTERED,
    ),
)
# Phone numbers: 9-15 digits, optionally +country code, grouped by spaces, dots, dashes or
# parentheses. Candidates are checked by `_phone` so dates and decimals stay.
_PHONE = re.compile(r"(?<![\w.:/+-])(?:\+|%2B)?\(?\d(?:[\s().-]{0,2}\d){8,14}(?![\w:/]|[.-]\d)")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")
_DECIMAL = re.compile(r"^\d+\.\d+$")


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    if _ISO_DATE.match(text) or _DECIMAL.match(text):
        return text
    return FILTERED


def is_sensitive_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    folded = "".join(ch for ch in key.lower() if ch.isalnum())
    if folded in _SENSITIVE_KEYS:
        return True
    return any(fragment in folded for fragment in _SENSITIVE_FRAGMENTS)


def scrub_text(text: str) -> str:
    """``text`` with every secret or personal datum of a recognizable shape replaced."""
    if len(text) < 6:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return _PHONE.sub(_phone, text)


def scrub(value: Any, *, _depth: int = 0) -> Any:
    """A copy of ``value`` (any JSON-like structure) with secrets and personal data replaced.

    Dicts keep their keys; a sensitive key's value becomes ``[Filtered]``. Lists of
    ``[name, value]`` pairs (how Sentry and ASGI carry headers) are treated as mappings.
    """
    if _depth > 32:
        return FILTERED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, bytes | bytearray):
        return scrub_text(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, Mapping):
        result: dict[Any, Any] = {}
        for key, item in value.items():
            if is_sensitive_key(key):
                result[key] = FILTERED if item not in (None, "", [], {}) else item
            elif key in _STRUCTURAL_KEYS:
                result[key] = item
            else:
                result[key] = scrub(item, _depth=_depth + 1)
        return result
    if isinstance(value, list | tuple):
        items = [_scrub_pair(item, _depth) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def _scrub_pair(item: Any, depth: int) -> Any:
    if (
        isinstance(item, list | tuple)
        and len(item) == 2
        and isinstance(item[0], str | bytes)
        and is_sensitive_key(item[0] if isinstance(item[0], str) else item[0].decode("latin-1"))
    ):
        return (item[0], FILTERED) if isinstance(item, tuple) else [item[0], FILTERED]
    return scrub(item, _depth=depth + 1)


def scrub_user(user: Mapping[str, Any] | None) -> dict[str, Any]:
    """User context keeps the id only: never email, IP address, username or anything else."""
    if not user or user.get("id") in (None, ""):
        return {}
    return {"id": str(user["id"])}
