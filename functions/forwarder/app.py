"""Lambda entry point of a forwarder: one provider's SQS forward queue to that provider."""

from mysoulmate.runtime.lambda_init import lambda_init

with lambda_init():
    from mysoulmate.runtime.lambda_forwarder import sqs_forwarder_handler

    # Built at init: the provider's secrets are read from SSM and the store connected once.
    handler = sqs_forwarder_handler()
