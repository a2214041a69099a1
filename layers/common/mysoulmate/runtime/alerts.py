"""The alerts function: SNS notifications from AlertsTopic in, Slack messages out.

The webhook URL is a credential: the function is configured with the NAME of the SSM
SecureString parameter holding it (SLACK_WEBHOOK_PARAMETER) and reads the value with
Powertools parameters on first use, decrypted and cached for `WEBHOOK_CACHE_SECONDS` (a
rotated URL is picked up within that time). Outside AWS, SLACK_WEBHOOK_URL may hold the URL
itself. The URL is never logged.

Whatever arrives, the handler returns normally: an event that is not an SNS event is logged
and ignored, a message that is not an alarm becomes a fallback Slack message, and a Slack
that stays down is given up on within the time budget (logged as an error; CloudWatch keeps
the alarm's state and history, and the alarm notifies again on its next state change).
Raising would only make Lambda re-run the invocation twice, re-posting what did get through.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from mysoulmate.alerts.slack import Delivery, message_for, post
from mysoulmate.core.settings import get_settings
from mysoulmate.observability import get_logger

LambdaHandler = Callable[[Any, Any], dict[str, int]]

# At most this long for all Slack attempts of one invocation, and never closer than
# `TIMEOUT_MARGIN_SECONDS` to the function's timeout (template.yaml: AlertsFunction, 30 s).
DELIVERY_BUDGET_SECONDS = 10.0
TIMEOUT_MARGIN_SECONDS = 5.0
WEBHOOK_CACHE_SECONDS = 300


class WebhookUnavailableError(RuntimeError):
    """No webhook URL could be obtained (not configured, or the SSM read failed)."""


def webhook_url() -> str:
    """The Slack webhook URL: SLACK_WEBHOOK_URL, else the SSM parameter SLACK_WEBHOOK_PARAMETER
    names (SecureString, decrypted; cached by Powertools). Error messages never hold it."""
    settings = get_settings()
    if settings.slack_webhook_url:
        return settings.slack_webhook_url
    name = settings.slack_webhook_parameter
    if not name:
        raise WebhookUnavailableError("neither SLACK_WEBHOOK_URL nor SLACK_WEBHOOK_PARAMETER set")
    from aws_lambda_powertools.utilities import parameters

    try:
        value = parameters.get_parameter(name, decrypt=True, max_age=WEBHOOK_CACHE_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any SSM/KMS/network failure means the same here
        # Powertools' and botocore's messages name the parameter and the error code, not the
        # (unread) value.
        raise WebhookUnavailableError(f"reading SSM parameter {name} failed: {exc}") from None
    if not isinstance(value, str) or not value.strip():
        raise WebhookUnavailableError(f"SSM parameter {name} is empty")
    return value.strip()


def _notifications(event: Any) -> tuple[list[tuple[Any, str, str]], int]:
    """(message, subject, topic ARN) of each SNS record, and how many records were not one
    (logged and skipped)."""
    logger = get_logger()
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list) or not records:
        shape = sorted(map(str, event))[:10] if isinstance(event, Mapping) else type(event).__name__
        logger.warning("Ignoring an event that is not an SNS notification", extra={"shape": shape})
        return [], 1
    notifications = []
    for index, record in enumerate(records):
        sns = record.get("Sns") if isinstance(record, Mapping) else None
        if not isinstance(sns, Mapping) or "Message" not in sns:
            logger.warning("Ignoring a record without an SNS message", extra={"record": index})
            continue
        notifications.append(
            (sns["Message"], str(sns.get("Subject") or ""), str(sns.get("TopicArn") or ""))
        )
    return notifications, len(records) - len(notifications)


def _remaining_seconds(context: Any) -> float:
    try:
        return float(context.get_remaining_time_in_millis()) / 1000
    except (AttributeError, TypeError, ValueError):
        return DELIVERY_BUDGET_SECONDS + TIMEOUT_MARGIN_SECONDS


def sns_alerts_handler(
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic
) -> LambdaHandler:
    """The Lambda handler; ``sleep`` and ``clock`` are the retry loop's (tests may pass
    their own)."""
    logger = get_logger()

    @logger.inject_lambda_context
    def handler(event: Any, context: Any) -> dict[str, int]:
        notifications, skipped = _notifications(event)
        outcome = {"delivered": 0, "failed": 0, "skipped": skipped}
        if not notifications:
            return outcome
        budget = min(DELIVERY_BUDGET_SECONDS, _remaining_seconds(context) - TIMEOUT_MARGIN_SECONDS)
        deadline = clock() + budget
        try:
            url = webhook_url()
        except WebhookUnavailableError as exc:
            logger.error("Cannot post alarms to Slack", extra={"reason": str(exc)})
            outcome["failed"] = len(notifications)
            return outcome
        region = get_settings().aws_region
        for message, subject, topic in notifications:
            title = ""
            try:
                payload = message_for(message, subject, topic, default_region=region)
                title = str(payload["text"])
                delivery = post(
                    url, payload, budget_seconds=deadline - clock(), sleep=sleep, clock=clock
                )
            except Exception:  # a bug here must not cost the other records
                logger.exception("Could not build or send a Slack message")
                delivery = Delivery(False, 0, error="unexpected error")
            summary = {"title": title, "attempts": delivery.attempts, "status": delivery.status}
            if delivery.delivered:
                outcome["delivered"] += 1
                logger.info("Posted to Slack", extra=summary)
            else:
                outcome["failed"] += 1
                logger.error("Gave up posting to Slack", extra={**summary, "error": delivery.error})
        return outcome

    return handler
