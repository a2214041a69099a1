"""Storage port: where accepted analytics messages end up. Adapters: sqlite, dynamodb."""
