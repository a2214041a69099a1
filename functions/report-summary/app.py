"""Lambda entry point posting a stored report's Slack summary (S3 event via EventBridge)."""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.runtime.lambda_reports import report_summary_handler

    handler = report_summary_handler()
