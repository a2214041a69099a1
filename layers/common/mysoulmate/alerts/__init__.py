"""Alarm notifications: CloudWatch alarms (through the AlertsTopic SNS topic) to Slack.

* `slack`: the Slack message for an alarm (or for anything else that reaches the topic), and
  its delivery to an incoming webhook with bounded, Retry-After-aware retries (stdlib only);
* the Lambda handler behind `functions/alerts/app.py` (webhook URL from SSM Parameter Store,
  never failing on a payload it does not understand) is `mysoulmate.runtime.alerts`.
"""
