"""Realistic success bodies for the API document (the responses of a small demo run,
trimmed to a few items each); errors have theirs in `api.responses`."""

from __future__ import annotations

from typing import Any

USER_ANALYTICS: dict[str, Any] = {
    "userId": "ava",
    "profile": {
        "traits": {"name": "Ava", "plan": "premium"},
        "anonymousIds": [],
        "updatedAt": "2026-12-06T17:08:43.954540Z",
        "firstSeen": "2026-12-06T17:08:43.938209Z",
        "lastSeen": "2026-12-06T17:08:43.950730Z",
    },
    "eventCounts": {"companion_created": 1, "message_sent": 1, "purchase": 1, "signup": 1},
    "sessions": 1,
    "events": [
        {
            "messageId": "dfad5790-4c56-43df-83e7-43c9874055b7",
            "type": "identify",
            "event": None,
            "properties": {"name": "Ava", "plan": "premium"},
            "timestamp": "2026-12-06T17:08:43.954540Z",
            "receivedAt": "2026-12-06T17:08:43.954540Z",
            "anonymousId": None,
            "platform": None,
            "context": {},
        },
        {
            "messageId": "3cc4bf18-3788-4dfe-88bb-4457d0ba08e9",
            "type": "track",
            "event": "purchase",
            "properties": {"plan": "premium_monthly", "revenue": 9.99, "currency": "EUR"},
            "timestamp": "2026-12-06T17:08:43.950730Z",
            "receivedAt": "2026-12-06T17:08:43.950730Z",
            "anonymousId": None,
            "platform": "ios",
            "context": {},
        },
    ],
    "nextCursor": "eyJpZCI6IjNjYzRiZjE4LTM3ODgtNGRmZS04OGJiLTQ0NTdkMGJhMDhlOSIs"
    "InRzIjoiMjAyNi0xMi0wNlQxNzowODo0My45NTA3MzBaIn0",
}

DASHBOARD: dict[str, Any] = {
    "from": "2026-12-06",
    "to": "2026-12-06",
    "platform": None,
    "totalEvents": 4,
    "activeUsers": 1,
    "dailyActiveUsers": [{"date": "2026-12-06", "users": 1}],
    "topEvents": [
        {"event": "companion_created", "count": 1, "users": 1},
        {"event": "message_sent", "count": 1, "users": 1},
    ],
    "eventsByDay": [{"date": "2026-12-06", "events": 4}],
    "platformBreakdown": [{"platform": "ios", "events": 4, "users": 1}],
    "revenue": {
        "totals": [{"currency": "EUR", "amount": 9.99}],
        "byDay": [{"date": "2026-12-06", "amounts": [{"currency": "EUR", "amount": 9.99}]}],
    },
    "funnel": {
        "steps": ["signup", "companion_created"],
        "usersEntered": 1,
        "funnel": [
            {
                "step": 1,
                "event": "signup",
                "users": 1,
                "conversionFromStart": 1.0,
                "conversionFromPrevious": 1.0,
                "dropOff": 0,
                "medianSecondsToConvert": None,
                "p90SecondsToConvert": None,
            },
            {
                "step": 2,
                "event": "companion_created",
                "users": 1,
                "conversionFromStart": 1.0,
                "conversionFromPrevious": 1.0,
                "dropOff": 0,
                "medianSecondsToConvert": None,
                "p90SecondsToConvert": None,
            },
        ],
    },
}

FUNNEL: dict[str, Any] = {
    "steps": ["signup", "companion_created", "purchase"],
    "order": "ordered",
    "from": "2026-12-06",
    "to": "2026-12-06",
    "windowSeconds": 604800,
    "usersEntered": 1,
    "funnel": [
        {
            "step": 1,
            "event": "signup",
            "users": 1,
            "conversionFromStart": 1.0,
            "conversionFromPrevious": 1.0,
            "dropOff": 0,
            "medianSecondsToConvert": None,
            "p90SecondsToConvert": None,
        },
        {
            "step": 2,
            "event": "companion_created",
            "users": 1,
            "conversionFromStart": 1.0,
            "conversionFromPrevious": 1.0,
            "dropOff": 0,
            "medianSecondsToConvert": 0.005,
            "p90SecondsToConvert": 0.005,
        },
        {
            "step": 3,
            "event": "purchase",
            "users": 1,
            "conversionFromStart": 1.0,
            "conversionFromPrevious": 1.0,
            "dropOff": 0,
            "medianSecondsToConvert": 0.013,
            "p90SecondsToConvert": 0.013,
        },
    ],
}

COHORTS: dict[str, Any] = {
    "period": "day",
    "from": "2026-12-06",
    "to": "2026-12-06",
    "periods": 2,
    "cohorts": [{"start": "2026-12-06", "size": 1, "active": [1, None], "retention": [1.0, None]}],
}

LOCALES: dict[str, Any] = {
    "default": "en",
    "locales": [
        {
            "code": "en",
            "name": "English",
            "nativeName": "English",
            "completeness": 100.0,
            "direction": "ltr",
        },
        {
            "code": "fr",
            "name": "French",
            "nativeName": "français",
            "completeness": 100.0,
            "direction": "ltr",
        },
    ],
}

TRANSLATION: dict[str, Any] = {
    "key": "common.itemsSelected",
    "locale": "fr",
    "count": 3,
    "text": "3 éléments sélectionnés",
}

READINESS: dict[str, Any] = {"status": "ready", "checks": {"storage": "ok", "queue": "ok"}}

LIVENESS: dict[str, Any] = {"status": "ok", "version": "0.1.0"}

ERASURE: dict[str, Any] = {
    "userId": "ava",
    "erased": True,
    "eventsDeleted": 5,
    "profileDeleted": True,
    "auditId": "20261206170844057863-7bad20b26699",
}

AUDIT: dict[str, Any] = {
    "entries": [
        {
            "id": "20261206170844057863-7bad20b26699",
            "at": "2026-12-06T17:08:44.057863Z",
            "actor": "ava",
            "action": "delete",
            "subject": "ava",
            "details": {"events": 5, "profile": True},
        }
    ],
    "nextCursor": None,
}

METRICS: dict[str, Any] = {
    "generatedAt": "2026-12-06T17:08:44.068683Z",
    "families": [
        {
            "name": "http_requests",
            "type": "counter",
            "help": "HTTP requests by route template, method and status.",
            "samples": [
                {
                    "name": "http_requests_total",
                    "labels": {
                        "route": "/api/v1/analytics/track",
                        "method": "POST",
                        "status": "202",
                    },
                    "value": 4.0,
                }
            ],
        }
    ],
}

ACCEPTED: dict[str, Any] = {"messageId": "0d8b5b8e-3c2a-4f6e-9a41-7a3e2f1c9b10", "status": "queued"}
EXPORT: dict[str, Any] = {
    "userId": "ava",
    "exportedAt": "2026-12-06T17:08:44.120000+00:00",
    "profile": {"traits": {"name": "Ava", "plan": "premium"}, "anonymousIds": []},
    "events": [
        {
            "messageId": "9cf07fed-ae4c-4141-bc96-545303beb982",
            "type": "track",
            "event": "purchase",
            "properties": {"plan": "premium_monthly", "revenue": 9.99, "currency": "EUR"},
            "timestamp": "2026-12-06T17:08:34.355660Z",
            "receivedAt": "2026-12-06T17:08:34.355660Z",
            "anonymousId": None,
            "platform": "ios",
            "context": {},
        }
    ],
}
EXPORT_CSV = (
    "messageId,type,event,timestamp,receivedAt,platform,anonymousId,properties,context\r\n"
    ',profile,,,,,,"{""name"":""Ava""}",\r\n'
    "9cf07fed-ae4c-4141-bc96-545303beb982,track,purchase,2026-12-06T17:08:34.355660+00:00,"
    '2026-12-06T17:08:34.355660+00:00,ios,,"{""revenue"":9.99}",{}\r\n'
)
CATALOG: dict[str, Any] = {
    "common": {"save": "Enregistrer", "cancel": "Annuler"},
    "errors": {"not_found": "Aucune ressource n'existe à cette adresse."},
}

PERF_ACCEPTED: dict[str, Any] = {
    "messageId": "5f0c2a9e-7b1d-4c3e-8a6f-2d9b4e1c7a30",
    "measurements": 4,
    "status": "queued",
}

PERF_BATCH: dict[str, Any] = {
    "screens": {
        "summary": "A chat session's measurements from an iOS app",
        "value": {
            "appVersion": "2.4.0",
            "platform": "ios",
            "deviceClass": "mid",
            "messageId": "5f0c2a9e-7b1d-4c3e-8a6f-2d9b4e1c7a30",
            "measurements": [
                {"metric": "app_start", "name": "cold", "value": 1840},
                {"metric": "render", "name": "ChatScreen", "value": 184.5},
                {"metric": "fps", "name": "ChatScreen", "value": 57.8},
                {"metric": "operation", "name": "sendMessage", "value": 412},
            ],
        },
    },
    "bundle": {
        "summary": "The JS bundle's size, once per start",
        "value": {
            "appVersion": "2.4.0",
            "platform": "android",
            "measurements": [{"metric": "bundle_size", "name": "main", "value": 2431877}],
        },
    },
}

_QUANTILES = {"count": 1840, "p50": 171.2, "p90": 312.9, "p99": 690.4, "mean": 196.3}
PERF_SUMMARY: dict[str, Any] = {
    "metric": "render",
    "name": "ChatScreen",
    "unit": "ms",
    "start": "2026-11-23",
    "end": "2026-12-06",
    "relativeAccuracy": 0.01,
    "overall": _QUANTILES,
    "byVersion": [
        {"appVersion": "2.4.0", **_QUANTILES, "count": 1120, "p90": 340.1},
        {"appVersion": "2.3.2", **_QUANTILES, "count": 720, "p90": 268.7},
    ],
    "byDay": [{"day": "2026-12-06", "appVersion": "2.4.0", **_QUANTILES, "count": 160}],
}

PERF_SCREENS: dict[str, Any] = {
    "start": "2026-11-23",
    "end": "2026-12-06",
    "threshold": 0.2,
    "minCount": 50,
    "screens": [
        {
            "name": "ChatScreen",
            "platform": "ios",
            "appVersion": "2.4.0",
            "p90": 340.1,
            "count": 1120,
            "previousVersion": "2.3.2",
            "previousP90": 268.7,
            "previousCount": 720,
            "change": 0.2657,
            "regressed": True,
        }
    ],
}
