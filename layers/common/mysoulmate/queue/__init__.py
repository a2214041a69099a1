"""Queue adapters of the analytics `MessageQueue` port: `local` (SQLite, SQS semantics) and
`sqs`; `limits` holds the SQS limits every adapter enforces."""
