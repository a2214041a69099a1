"""The PII policy: what personal data an analytics message may carry into storage (and, later,
to providers). Applied once, when the API builds the queued message, so that neither the
queue, the store nor a provider ever holds what it drops. docs/analytics.md documents it.

* **Secrets are dropped**, wherever they appear (properties, context, traits): a key that
  names a credential (`password`, `token`, `secret`, `api_key`, `authorization`, …, matched
  on the key's last word, so `tokens_used` stays) and any string holding a card number
  (13 to 19 digits passing the Luhn check).
* **E-mail addresses and phone numbers in event properties and context are hashed** (the
  default, ``PII_CONTACT_MODE=hash``: ``sha256:`` and 16 hex digits of the normalized value,
  so distinct counts still work) or **masked** (``mask``: ``a***@example.com``,
  ``+33******78``). Inside longer text, e-mail addresses are replaced in place.
* **Identify traits keep the profile fields** of `PROFILE_TRAITS` (`email`, `name`,
  `phone`, …) as sent: the profile is what export and erasure cover. Other traits go
  through the same filter as properties.

``PII_FILTER=false`` turns the policy off (for example for a tenant that hashes on the
client). Every value removed or rewritten is counted (the ``PiiFiltered`` signal).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

ContactMode = Literal["hash", "mask"]

# Keys (lower-cased, separators removed) whose value is a credential: exact names, and
# suffixes matched at a word boundary of the original key (`user_password`, `X-Api-Key`).
SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "token",
        "apikey",
        "accesskey",
        "privatekey",
        "authorization",
        "auth",
        "cookie",
        "cvv",
        "cvc",
        "pin",
        "ssn",
        "cardnumber",
        "creditcard",
    }
)
PROFILE_TRAITS = frozenset(
    {
        "email",
        "name",
        "firstName",
        "lastName",
        "username",
        "phone",
        "avatar",
        "birthday",
        "age",
        "gender",
        "address",
        "city",
        "country",
        "locale",
        "language",
        "timezone",
        "plan",
        "company",
        "title",
        "createdAt",
        "description",
        "website",
    }
)
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# International (+ and 8 to 15 digits) or North American (555-123-4567) numbers only: dates,
# versions and IP addresses have the same characters and must stay as they are.
_PHONE = re.compile(r"^(?:\+[0-9][0-9 ().-]{6,22}[0-9]|\(?[0-9]{3}\)?[ .-]?[0-9]{3}[ .-][0-9]{4})$")
_CARD = re.compile(r"(?<![0-9])(?:[0-9][ -]?){12,18}[0-9](?![0-9])")


@dataclass(frozen=True)
class PiiPolicy:
    enabled: bool = True
    contact_mode: ContactMode = "hash"


@dataclass
class PiiReport:
    """What one message lost to the policy, by kind (secret, card, email, phone)."""

    counts: Counter[str] = field(default_factory=Counter)


@functools.lru_cache(maxsize=4096)  # apps send the same few keys with every event
def is_secret_key(key: str) -> bool:
    words = [w.lower() for w in _WORDS.findall(key)]
    if not words:
        return False
    joined = "".join(words)
    # The whole key, or its last one or two words: `apiKey`, `client_secret`, `x-auth-token`.
    return (
        joined in SECRET_WORDS or words[-1] in SECRET_WORDS or "".join(words[-2:]) in SECRET_WORDS
    )


def passes_luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def holds_card_number(text: str) -> bool:
    for match in _CARD.finditer(text):
        digits = re.sub(r"[ -]", "", match.group())
        if 13 <= len(digits) <= 19 and passes_luhn(digits):
            return True
    return False


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def _mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


def _is_phone(text: str) -> bool:
    if not _PHONE.match(text):
        return False
    return 8 <= sum(char.isdigit() for char in text) <= 15


class _Filter:
    def __init__(self, policy: PiiPolicy, report: PiiReport) -> None:
        self.policy = policy
        self.report = report

    def text(self, value: str) -> str | None:
        """The string as it may be stored, or None to drop it."""
        if holds_card_number(value):
            self.report.counts["card"] += 1
            return None
        stripped = value.strip()
        if _is_phone(stripped):
            self.report.counts["phone"] += 1
            if self.policy.contact_mode == "hash":
                return _digest(re.sub(r"[^0-9+]", "", stripped))
            return stripped[:3] + "*" * max(len(stripped) - 5, 0) + stripped[-2:]
        if "@" in value:
            return _EMAIL.sub(self._email, value)
        return value

    def _email(self, match: re.Match[str]) -> str:
        self.report.counts["email"] += 1
        address = match.group()
        if self.policy.contact_mode == "hash":
            return _digest(address.strip().lower())
        return _mask_email(address)

    def value(self, value: Any) -> tuple[bool, Any]:
        """(keep, filtered value). Nesting is bounded by validation (`MAX_NESTING`)."""
        if isinstance(value, str):
            filtered = self.text(value)
            return filtered is not None, filtered
        if isinstance(value, dict):
            return True, self.mapping(value)
        if isinstance(value, list):
            kept = [v for keep, v in (self.value(item) for item in value) if keep]
            return True, kept
        return True, value

    def mapping(
        self, data: dict[str, Any], keep_as_sent: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, item in data.items():
            if is_secret_key(key):
                self.report.counts["secret"] += 1
                continue
            if key in keep_as_sent and not (isinstance(item, str) and holds_card_number(item)):
                out[key] = item
                continue
            keep, filtered = self.value(item)
            if keep:
                out[key] = filtered
        return out


def filter_event(
    properties: dict[str, Any], context: dict[str, Any], policy: PiiPolicy
) -> tuple[dict[str, Any], dict[str, Any], PiiReport]:
    """Properties and context of a track event as they may be stored."""
    report = PiiReport()
    if not policy.enabled:
        return properties, context, report
    pii = _Filter(policy, report)
    return pii.mapping(properties), pii.mapping(context), report


def filter_traits(traits: dict[str, Any], policy: PiiPolicy) -> tuple[dict[str, Any], PiiReport]:
    """Identify traits as they may be stored: profile fields as sent, secrets never."""
    report = PiiReport()
    if not policy.enabled:
        return traits, report
    return _Filter(policy, report).mapping(traits, keep_as_sent=PROFILE_TRAITS), report
