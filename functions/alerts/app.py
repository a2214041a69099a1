"""Lambda entry point for the alerts function: CloudWatch alarms (AlertsTopic, SNS) to Slack.

Not behind the API and rarely invoked, so no SnapStart: init imports the settings and
Powertools' Logger only; the SSM client is built on the first notification.
"""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.runtime.alerts import sns_alerts_handler

    handler = sns_alerts_handler()
