"""Queue port: accepted messages wait here until the consumer stores them. Adapters: sqs, local."""
