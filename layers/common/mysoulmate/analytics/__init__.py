"""Analytics domain: models, normalization, ingest (the consumer's record handler), rollups,
dashboard, funnels, cohorts, GDPR, and its ports (`ports.EventStore`, `ports.MessageQueue`)."""
