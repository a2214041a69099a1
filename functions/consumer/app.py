"""Lambda entry point for the SQS consumer that stores analytics events."""

from mysoulmate.lambda_runtime import sqs_consumer_handler

handler = sqs_consumer_handler()
