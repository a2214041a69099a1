"""CloudWatch alarm notifications as Slack messages, and their delivery to a webhook.

`message_for` turns whatever arrived on the alerts topic into a Slack payload: a CloudWatch
alarm state change becomes a coloured card (state, reason, metric, threshold, time, a button
to the alarm in the console); anything else (a test publish, a malformed message) becomes a
plain fallback card, so that nothing published to the topic is silently dropped.

`post` delivers a payload with the standard library only (urllib): this runs in a function
that should cost nothing to start, and a Slack webhook needs one POST. Transient failures
(429, 5xx, connection errors, timeouts) are retried with exponential backoff and full
jitter, honouring Slack's Retry-After, within a time budget the caller sets; permanent ones
(other 4xx: a revoked webhook, an archived channel) are not. It never raises, and it never
puts the webhook URL (a credential) in a message or an error.
"""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

# State -> (emoji, attachment colour).
STATES: dict[str, tuple[str, str]] = {
    "ALARM": (":rotating_light:", "#d13212"),
    "OK": (":white_check_mark:", "#1d8102"),
    "INSUFFICIENT_DATA": (":grey_question:", "#8d99a8"),
}
UNKNOWN_STATE = (":grey_question:", "#8d99a8")
FALLBACK_COLOUR = "#8d99a8"

OPERATORS = {
    "GreaterThanThreshold": ">",
    "GreaterThanOrEqualToThreshold": "≥",
    "LessThanThreshold": "<",
    "LessThanOrEqualToThreshold": "≤",
}

# Slack Block Kit limits (characters).
HEADER_LIMIT = 150
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000

# Retries: the first wait is about BASE_DELAY, doubling up to MAX_DELAY; one attempt may take
# at most ATTEMPT_TIMEOUT (Slack answers in well under a second when it is healthy).
BASE_DELAY = 0.25
MAX_DELAY = 4.0
ATTEMPT_TIMEOUT = 5.0
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


# ----------------------------------------------------------------------------- the message


@dataclass(frozen=True)
class Alarm:
    """The parts of a CloudWatch alarm notification (the SNS message's JSON) worth showing."""

    name: str
    state: str
    old_state: str
    reason: str
    description: str
    changed_at: datetime | None
    region: str  # code, e.g. us-east-1 (from the ARN; the message's "Region" is a long name)
    region_name: str
    partition: str
    account: str
    trigger: Mapping[str, Any]

    @classmethod
    def from_message(cls, data: Any) -> Alarm | None:
        """The alarm in an SNS message body, or None when it is not an alarm notification."""
        if not isinstance(data, Mapping):
            return None
        name, state = data.get("AlarmName"), data.get("NewStateValue")
        if not (isinstance(name, str) and name and isinstance(state, str) and state):
            return None
        arn = str(data.get("AlarmArn") or "")
        arn_parts = arn.split(":")
        partition, region = ("aws", "")
        if len(arn_parts) > 3 and arn_parts[0] == "arn":
            partition, region = arn_parts[1] or "aws", arn_parts[3]
        trigger = data.get("Trigger")
        return cls(
            name=name,
            state=state,
            old_state=str(data.get("OldStateValue") or ""),
            reason=str(data.get("NewStateReason") or ""),
            description=str(data.get("AlarmDescription") or ""),
            changed_at=_timestamp(data.get("StateChangeTime")),
            region=region,
            region_name=str(data.get("Region") or ""),
            partition=partition,
            account=str(data.get("AWSAccountId") or ""),
            trigger=trigger if isinstance(trigger, Mapping) else {},
        )

    def console_url(self, default_region: str = "") -> str:
        """The alarm's page in the CloudWatch console."""
        region = self.region or default_region or "us-east-1"
        host = {
            "aws-cn": f"{region}.console.amazonaws.cn",
            "aws-us-gov": "console.amazonaws-us-gov.com",
        }.get(self.partition, f"{region}.console.aws.amazon.com")
        return (
            f"https://{host}/cloudwatch/home?region={region}"
            f"#alarmsV2:alarm/{quote(self.name, safe='')}"
        )


def _timestamp(value: Any) -> datetime | None:
    """CloudWatch writes e.g. 2026-01-31T12:00:00.123+0000."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"  # +0000 -> +00:00 for fromisoformat on 3.11
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dimensions(raw: Any) -> str:
    """`[{"name": "FunctionName", "value": "f"}]` (either case) -> `FunctionName=f`."""
    pairs = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, Mapping):
            name = item.get("name", item.get("Name"))
            value = item.get("value", item.get("Value"))
            pairs.append(f"{name}={value}")
    return ", ".join(pairs)


def metric_summary(trigger: Mapping[str, Any]) -> str:
    """What the alarm watches: one metric, or a metric math expression and its inputs."""
    if trigger.get("MetricName"):
        line = f"{trigger.get('Namespace', '')} {trigger['MetricName']}".strip()
        dimensions = _dimensions(trigger.get("Dimensions"))
        return f"{line} ({dimensions})" if dimensions else line
    lines: list[str] = []
    for query in trigger.get("Metrics") or []:
        if not isinstance(query, Mapping):
            continue
        ident = query.get("Id", "?")
        if query.get("Expression"):
            label = f" “{query['Label']}”" if query.get("Label") else ""
            lines.insert(0, f"{ident} = {query['Expression']}{label}")
            continue
        stat = query.get("MetricStat") or {}
        metric = stat.get("Metric") or {}
        dimensions = _dimensions(metric.get("Dimensions"))
        text = f"{ident}: {metric.get('Namespace', '')} {metric.get('MetricName', '')}".rstrip()
        lines.append(f"{text} ({dimensions})" if dimensions else text)
    return "\n".join(lines) or "(not given)"


def threshold_summary(trigger: Mapping[str, Any]) -> str:
    if "Threshold" not in trigger:
        return "(not given)"
    operator = str(trigger.get("ComparisonOperator", ""))
    statistic = trigger.get("ExtendedStatistic") or trigger.get("Statistic") or ""
    if statistic and trigger.get("StatisticType") == "ExtendedStatistic":
        statistic = str(statistic).lower()
    threshold = trigger["Threshold"]
    if isinstance(threshold, float) and threshold.is_integer():
        threshold = int(threshold)
    text = f"{statistic} {OPERATORS.get(operator, operator)} {threshold}".strip()
    periods, period = trigger.get("EvaluationPeriods"), trigger.get("Period")
    if periods and period:
        datapoints = trigger.get("DatapointsToAlarm")
        of = f"{datapoints} of {periods}" if datapoints and datapoints != periods else periods
        text += f" for {of} x {period} s"
    return text


def _slack_date(moment: datetime | None) -> str:
    """Slack shows <!date^…> in the reader's time zone; the fallback text is UTC."""
    if moment is None:
        return "(not given)"
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time_secs}}|{fallback}>"


def alarm_message(alarm: Alarm, default_region: str = "") -> dict[str, Any]:
    """A Slack message (Block Kit inside a coloured attachment) for an alarm state change."""
    emoji, colour = STATES.get(alarm.state, UNKNOWN_STATE)
    title = f"{emoji} {alarm.state}: {alarm.name}"
    body = escape(alarm.reason) or "_no reason given_"
    if alarm.description:
        body = f"*{escape(alarm.description)}*\n{body}"
    region = alarm.region or default_region
    where = f"{alarm.region_name} ({region})" if alarm.region_name and region else region
    change = f"{alarm.old_state} → {alarm.state}" if alarm.old_state else alarm.state
    fields = [
        ("State", change),
        ("Since", _slack_date(alarm.changed_at)),
        ("Metric", escape(metric_summary(alarm.trigger))),
        ("Threshold", escape(threshold_summary(alarm.trigger))),
        ("Region", escape(where or "(not given)")),
        ("Account", escape(alarm.account or "(not given)")),
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(title, HEADER_LIMIT), "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": _clip(body, SECTION_LIMIT)}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": _clip(f"*{label}*\n{value}", FIELD_LIMIT)}
                for label, value in fields
            ],
        },
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open in CloudWatch"},
                    "url": alarm.console_url(default_region),
                }
            ],
        },
    ]
    return {
        # The notification text (mrkdwn: escaped, so a name such as "<!channel>" pings no one);
        # clients without blocks show it too.
        "text": escape(title),
        "attachments": [{"color": colour, "fallback": escape(title), "blocks": blocks}],
    }


def fallback_message(text: str, subject: str = "", topic: str = "") -> dict[str, Any]:
    """Anything on the topic that is not an alarm notification, shown as it came."""
    title = f":envelope: {subject or 'Message'} (not a CloudWatch alarm)"
    origin = f"Received on `{escape(topic)}`." if topic else "Received on the alerts topic."
    content = _clip(text, SECTION_LIMIT - 100) if text else "(empty message)"
    blocks = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": _clip(title, HEADER_LIMIT), "emoji": True},
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{escape(content)}```"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": origin}]},
    ]
    return {
        "text": escape(title),  # a subject like "<!channel> …" must not ping the channel
        "attachments": [{"color": FALLBACK_COLOUR, "fallback": escape(title), "blocks": blocks}],
    }


def message_for(
    message: Any, subject: str = "", topic: str = "", default_region: str = ""
) -> dict[str, Any]:
    """The Slack message for an SNS message body (JSON alarm, other JSON, or plain text)."""
    text = message if isinstance(message, str) else json.dumps(message, default=str)
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    alarm = Alarm.from_message(data)
    if alarm is not None:
        return alarm_message(alarm, default_region)
    return fallback_message(text, subject, topic)


# ----------------------------------------------------------------------------- delivery


@dataclass(frozen=True)
class Delivery:
    """How a post ended. ``error`` never contains the webhook URL."""

    delivered: bool
    attempts: int
    status: int | None = None
    error: str = ""


class _Retryable(Exception):
    def __init__(self, status: int | None, error: str, retry_after: float | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.retry_after = status, error, retry_after


class _Permanent(Exception):
    def __init__(self, status: int | None, error: str) -> None:
        super().__init__(error)
        self.status, self.error = status, error


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _attempt(request: urllib.request.Request, timeout: float) -> int:
    """One POST: the status on success; raises `_Retryable` or `_Permanent` otherwise."""
    try:
        # The scheme is checked by `post` (http or https only).
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        detail = exc.read(200).decode("utf-8", "replace").strip()
        error = f"HTTP {exc.code}" + (f": {detail}" if detail else "")
        if exc.code in RETRYABLE_STATUS:
            retry_after = retry_after_seconds(exc.headers.get("Retry-After"))
            raise _Retryable(exc.code, error, retry_after) from None
        raise _Permanent(exc.code, error) from None
    except urllib.error.URLError as exc:
        raise _Retryable(None, f"connection failed: {type(exc.reason).__name__}") from None
    except ValueError:  # http.client.InvalidURL and the like: their message quotes the URL
        raise _Permanent(None, "the webhook URL is malformed") from None
    except (TimeoutError, ConnectionError) as exc:
        raise _Retryable(None, f"connection failed: {type(exc).__name__}") from None
    except OSError as exc:  # anything else the socket layer raises mid-response
        raise _Retryable(None, f"connection failed: {type(exc).__name__}") from None


def post(
    webhook_url: str,
    payload: Mapping[str, Any],
    *,
    budget_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Delivery:
    """POST ``payload`` to a Slack incoming webhook, retrying transient failures until
    ``budget_seconds`` have passed (the wait included). Never raises."""
    try:
        if urlsplit(webhook_url).scheme not in ("https", "http"):
            raise ValueError("not http(s)")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            webhook_url,
            data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            method="POST",
            headers={"Content-Type": "application/json; charset=utf-8"},
        )
    except ValueError:  # the message would quote the URL
        return Delivery(False, 0, error="the webhook URL is not a valid http(s) URL")
    deadline = clock() + max(0.0, budget_seconds)
    attempts = 0
    while True:
        remaining = deadline - clock()
        if remaining <= 0:
            return Delivery(False, attempts, error="no time left for an attempt")
        attempts += 1
        try:
            status = _attempt(request, timeout=min(ATTEMPT_TIMEOUT, remaining))
            return Delivery(True, attempts, status)
        except _Permanent as exc:
            return Delivery(False, attempts, exc.status, exc.error)
        except _Retryable as exc:
            backoff = random.uniform(0, min(MAX_DELAY, BASE_DELAY * 2 ** (attempts - 1)))
            # Slack's Retry-After is a floor: retrying sooner is only throttled again.
            wait = max(backoff, exc.retry_after or 0.0)
            if clock() + wait >= deadline:
                reason = f"{exc.error}; gave up: the next attempt would be after the time budget"
                return Delivery(False, attempts, exc.status, reason)
            sleep(wait)
