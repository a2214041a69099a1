"""Lambda entry point of the scheduled reports (EventBridge Scheduler, daily and weekly)."""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.runtime.lambda_reports import reports_handler

    handler = reports_handler()
