"""How stored messages become Mixpanel calls, and Mixpanel's answers our errors: the pure
rules of `providers.mixpanel_mapping` (the wire itself is tested in
tests/integration/test_mixpanel_provider.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mysoulmate.analytics.models import QueuedMessage
from mysoulmate.providers.base import ProviderRejectedError, ProviderUnavailableError
from mysoulmate.providers.mixpanel_gdpr import app_base_url
from mysoulmate.providers.mixpanel_mapping import (
    TRACK_MAX_AGE,
    EventCall,
    ProfileCall,
    base_url,
    distinct_id_of,
    event_properties,
    failure_for_status,
    fitted,
    insert_id_of,
    person_distinct_ids,
    plan_message,
    profile_traits,
    retry_after_seconds,
    scrub,
    view_name,
)

from tests.support.messages import identify, identify_as, jan, track, visit

NOW = jan(20)
INSERT_ID = re.compile(r"[A-Za-z0-9-]{1,36}")


def plan(message: QueuedMessage, *, can_import: bool = True, group_key: str = "") -> Any:
    return plan_message(message, now=NOW, can_import=can_import, group_key=group_key)


def message(**fields: Any) -> QueuedMessage:
    base: dict[str, Any] = {"messageId": "m-1", "timestamp": jan(19), "receivedAt": jan(19)}
    return QueuedMessage.model_validate(base | fields)


# -- ids ---------------------------------------------------------------------------------


def test_a_message_id_that_fits_is_its_own_insert_id() -> None:
    assert insert_id_of("3f2b-11aa-ABC") == "3f2b-11aa-ABC"


@pytest.mark.parametrize("message_id", ["a" * 37, "ios:1/2", "über", "null", "0", "-1"])
def test_a_message_id_mixpanel_refuses_is_hashed(message_id: str) -> None:
    insert_id = insert_id_of(message_id)

    assert insert_id != message_id
    assert INSERT_ID.fullmatch(insert_id)
    assert insert_id == insert_id_of(message_id)


@given(st.text(min_size=1, max_size=100))
def test_every_message_id_gives_a_valid_deterministic_insert_id(message_id: str) -> None:
    insert_id = insert_id_of(message_id)

    assert INSERT_ID.fullmatch(insert_id)
    assert insert_id.lower() not in {"null", "0", "-1", "true", "false", "none"}
    assert insert_id == insert_id_of(message_id)


def test_distinct_ids_users_and_devices() -> None:
    assert distinct_id_of(track("user-1", "E", jan(19))) == "user-1"
    assert distinct_id_of(visit("dev-9", jan(19))) == "$device:dev-9"
    # A user's event carrying the device keeps the user as distinct_id.
    assert distinct_id_of(identify_as("user-1", "dev-9", jan(19))) == "user-1"


def test_a_persons_distinct_ids_for_deletion() -> None:
    assert person_distinct_ids("user-1", ["d1", "d2", "d1"]) == [
        "user-1",
        "$device:d1",
        "$device:d2",
    ]
    assert person_distinct_ids("anon:d1", ["d1"]) == ["$device:d1"]


def test_a_distinct_id_mixpanel_refuses_skips_the_message() -> None:
    assert plan(track("undefined", "E", jan(19))).skipped == "invalid_distinct_id"


# -- names and properties ----------------------------------------------------------------


def test_view_names() -> None:
    assert view_name("page", "Pricing") == "Viewed Pricing Page"
    assert view_name("screen", "Settings") == "Viewed Settings Screen"
    assert view_name("page", None) == "Loaded a Page"
    assert view_name("screen", "") == "Loaded a Screen"


def test_a_view_without_a_name_field_takes_it_from_its_event_name() -> None:
    view = message(type="screen", userId="user-1", event="$screen:Chat")

    (event,) = plan(view).events
    assert event.name == "Viewed Chat Screen"


def test_event_properties_layer_context_then_client_then_ours() -> None:
    event = message(
        type="track",
        userId="user-1",
        anonymousId="dev-9",
        event="Opened",
        platform="ios",
        sessionId="s-1",
        context={
            "app": {"version": "2.1"},
            "page": {"url": "https://example.com/a"},
            "campaign": {"source": "news", "name": "spring"},
        },
        properties={"$os": "iPadOS", "token": "x", "distinct_id": "y", "$insert_id": "z"},
    )

    props = event_properties(event)

    assert props["$os"] == "iPadOS"  # the client's own value wins over the platform's
    assert props["$app_version_string"] == "2.1"
    assert props["$current_url"] == "https://example.com/a"
    assert (props["utm_source"], props["utm_campaign"]) == ("news", "spring")
    assert props["platform"] == "ios"
    assert (props["$user_id"], props["$device_id"]) == ("user-1", "dev-9")
    assert props["session_id"] == "s-1"
    assert props["$insert_id"] == "m-1"
    assert props["time"] == int(jan(19).timestamp() * 1000)
    assert "token" not in props
    assert "distinct_id" not in props


def test_the_platform_names_the_os_when_the_context_does_not() -> None:
    assert event_properties(track("u", "E", jan(19), platform="android"))["$os"] == "Android"
    assert "$os" not in event_properties(track("u", "E", jan(19), platform="web"))


def test_deep_or_long_values_are_sent_as_json_text() -> None:
    properties = {"a": {"b": {"c": 1}}, "list": [1, [2]], "long": list(range(300)), "n": 1}

    assert {key: fitted(value) for key, value in properties.items()} == {
        "a": {"b": '{"c":1}'},
        "list": [1, "[2]"],
        "long": "[" + ",".join(map(str, range(300))) + "]",
        "n": 1,
    }


def test_an_event_never_passes_mixpanels_property_limit() -> None:
    many = {f"p{i:03}": i for i in range(255)}
    event = track("user-1", "E", jan(19), platform="ios").model_copy(update={"properties": many})

    props = event_properties(event)

    assert len(props) + 4 <= 254  # the library adds token, distinct_id, mp_lib, $lib_version
    assert props["p000"] == 0  # the client's first properties are kept, its last left out
    assert "p254" not in props
    assert props["$insert_id"] == event.messageId
    assert props["$os"] == "iOS"


def test_segment_trait_names_become_mixpanel_reserved_ones() -> None:
    traits = {"email": "a@b.c", "firstName": "Ada", "createdAt": "2026-01-01", "plan": "pro"}

    assert profile_traits(traits) == {
        "$email": "a@b.c",
        "$first_name": "Ada",
        "$created": "2026-01-01",
        "plan": "pro",
    }


# -- plans -------------------------------------------------------------------------------


def test_a_recent_event_is_tracked_and_an_old_one_imported() -> None:
    recent = track("u", "E", NOW - TRACK_MAX_AGE + timedelta(minutes=1))
    old = track("u", "E", NOW - TRACK_MAX_AGE - timedelta(minutes=1))

    assert [e.imported for e in plan(recent).events] == [False]
    assert [e.imported for e in plan(old).events] == [True]
    assert plan(old, can_import=False).skipped == "too_old_no_secret"


def test_an_old_identify_without_a_secret_keeps_its_traits_and_loses_its_merge() -> None:
    old = identify_as("user-1", "dev-9", NOW - timedelta(days=30), plan="pro")

    result = plan(old, can_import=False)

    assert result.skipped is None
    assert result.events == []
    assert result.profile == [ProfileCall("set", "user-1", {"plan": "pro"})]


def test_revenue_becomes_a_charge_in_its_currency() -> None:
    purchase = track("user-1", "Bought", jan(19, 8), revenue=12, currency="gbp")

    (charge,) = plan(purchase).profile

    assert charge == ProfileCall(
        "charge", "user-1", {"$time": "2026-01-19T08:00:00", "currency": "GBP"}, 12.0
    )


@pytest.mark.parametrize("revenue", ["12", True, float("nan"), 2e12])
def test_what_is_not_revenue_is_not_charged(revenue: object) -> None:
    purchase = track("user-1", "Bought", jan(19))
    purchase = purchase.model_copy(update={"properties": {"revenue": revenue}})

    assert plan(purchase).profile == []


def test_a_page_view_with_revenue_is_not_charged() -> None:
    view = message(type="page", userId="u", event="$page:Shop", properties={"revenue": 3})

    assert plan(view).profile == []


def test_identify_merges_only_a_user_with_a_device() -> None:
    merged = plan(identify_as("user-1", "dev-9", jan(19)))
    alone = plan(identify("user-1", jan(19), plan="pro"))
    anonymous = plan(message(type="identify", userId="anon:dev-9", anonymousId="dev-9"))

    assert [e.name for e in merged.events] == ["$identify"]
    assert merged.events[0].distinct_id == "user-1"
    assert alone.events == []
    assert anonymous.skipped == "empty"


def test_an_identify_with_nothing_to_say_is_skipped() -> None:
    assert plan(identify("user-1", jan(19))).skipped == "empty"


def test_alias_and_its_refusals() -> None:
    alias = message(type="alias", userId="user-2", previousId="user-1")

    (event,) = plan(alias).events
    assert event == EventCall("user-1", "$create_alias", event.properties)
    assert event.properties["alias"] == "user-2"
    assert plan(message(type="alias", userId="user-2")).skipped == "invalid_alias"


def test_groups_only_with_a_group_key_and_regardless_of_age() -> None:
    group = message(
        type="group",
        userId="user-1",
        groupId="acme",
        traits={"size": 5},
        timestamp=NOW - timedelta(days=40),
    )

    assert plan(group).skipped == "unsupported"
    calls = plan(group, can_import=False, group_key="company").profile
    assert calls == [
        ProfileCall("group_set", "acme", {"size": 5}, group_key="company"),
        ProfileCall("union", "user-1", {"company": ["acme"]}),
    ]


# -- answers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (500, ProviderUnavailableError),
        (502, ProviderUnavailableError),
        (429, ProviderUnavailableError),
        (408, ProviderUnavailableError),
        (400, ProviderRejectedError),
        (401, ProviderRejectedError),
        (413, ProviderRejectedError),
        (200, ProviderRejectedError),
    ],
)
def test_statuses_map_to_unavailable_or_rejected(status: int, kind: type[Exception]) -> None:
    assert type(failure_for_status("Mixpanel /track", status, None, "")) is kind


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)

    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Tue, 20 Jan 2026 12:01:00 GMT", now) == 60.0
    assert retry_after_seconds("Tue, 20 Jan 2026 11:00:00 GMT", now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None
    assert retry_after_seconds(None) is None
    assert failure_for_status("x", 503, "5", "").retry_after == 5.0  # type: ignore[union-attr]


def test_scrub_hides_secrets_and_bounds_the_text() -> None:
    assert scrub("bad token abc and def", ("abc", "def", "")) == "bad token *** and ***"
    assert len(scrub("x" * 1000, ())) == 200


def test_hosts_and_base_urls() -> None:
    assert base_url("api-eu.mixpanel.com") == "https://api-eu.mixpanel.com"
    assert base_url("http://127.0.0.1:8080/") == "http://127.0.0.1:8080"
    assert app_base_url("api-eu.mixpanel.com") == "https://eu.mixpanel.com"
    assert app_base_url("api-in.mixpanel.com") == "https://in.mixpanel.com"
    assert app_base_url("api.mixpanel.com") == "https://mixpanel.com"
    assert app_base_url("http://127.0.0.1:9") == "http://127.0.0.1:9"
