"""Lambda entry point for the SQS consumer that stores analytics events."""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    # First, while pydantic is not loaded yet: Powertools' batch utility then skips building
    # its pydantic parser models for every event source, which this consumer never uses.
    import aws_lambda_powertools.utilities.batch  # noqa: F401
    from mysoulmate.runtime.backends import event_store
    from mysoulmate.runtime.lambda_handlers import sqs_consumer_handler

    handler = sqs_consumer_handler()
    event_store()  # the DynamoDB client is built during init, not in the first batch
