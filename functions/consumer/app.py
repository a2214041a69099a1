"""Lambda entry point for the SQS consumer that stores analytics events."""

from mysoulmate.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.backends import event_store
    from mysoulmate.lambda_runtime import sqs_consumer_handler

    handler = sqs_consumer_handler()
    event_store()  # the DynamoDB client is built during init, not in the first batch
