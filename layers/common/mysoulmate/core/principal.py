"""Who is calling: the principal (subject and roles) that verified claims describe.

Free of any web framework: the domain checks access with it, and `mysoulmate.api.auth`
builds it from a bearer token or from API Gateway's authorizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mysoulmate.core.errors import AuthenticationError, ForbiddenError
from mysoulmate.core.settings import Settings


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    roles: frozenset[str]
    admin_role: str = "admin"
    server_role: str = "server"

    @property
    def is_admin(self) -> bool:
        return self.admin_role in self.roles

    @property
    def may_act_for_others(self) -> bool:
        """Admin and server tokens may track for, and read, any user (backfills, support)."""
        return self.is_admin or self.server_role in self.roles

    def require_access_to(self, user_id: str) -> None:
        if user_id != self.subject and not self.may_act_for_others:
            raise ForbiddenError(code="forbidden_other_user")

    def require_self_or_admin(self, user_id: str) -> None:
        """Exports and erasure: the user themself or an admin; server tokens may not."""
        if user_id != self.subject and not self.is_admin:
            raise ForbiddenError(code="forbidden_other_user")

    def require_admin(self) -> None:
        if not self.is_admin:
            raise ForbiddenError(code="admin_required")


def roles_from_claims(claims: dict[str, Any]) -> frozenset[str]:
    """Roles from ``roles`` (our tokens) or ``cognito:groups`` (Cognito).

    API Gateway flattens list claims into strings such as ``"[admin user]"``; both shapes
    are accepted.
    """
    roles: set[str] = set()
    for claim in ("roles", "cognito:groups"):
        value = claims.get(claim)
        if isinstance(value, list):
            roles.update(str(v) for v in value)
        elif isinstance(value, str):
            roles.update(part for part in value.strip("[]").replace(",", " ").split() if part)
    return frozenset(roles)


def principal_from_claims(claims: dict[str, Any], settings: Settings) -> Principal:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationError(code="invalid_token", reason_key="errors.tokenReasons.no_subject")
    return Principal(
        subject=subject,
        roles=roles_from_claims(claims),
        admin_role=settings.admin_role,
        server_role=settings.server_role,
    )
