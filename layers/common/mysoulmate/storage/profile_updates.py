"""`update_profiles` for the backends whose profile merge is already one local transaction
(SQLite, PostgreSQL): one user after the other, each failure kept to its user."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from mysoulmate.analytics.models import Profile
from mysoulmate.analytics.ports import ProfileResults, ProfileUpdate


class _UpdatesOneProfile(Protocol):
    def update_profile(
        self, user_id: str, update: ProfileUpdate, *, received_at: datetime | None = None
    ) -> Profile | None: ...


def update_each(
    store: _UpdatesOneProfile, updates: Mapping[str, tuple[ProfileUpdate, datetime]]
) -> ProfileResults:
    results = ProfileResults()
    for user_id, (update, received_at) in updates.items():
        try:
            results.merged[user_id] = store.update_profile(user_id, update, received_at=received_at)
        except Exception as exc:  # noqa: BLE001 - kept to this user; the queue retries them
            results.failed[user_id] = f"profile update failed: {exc}"
    return results
