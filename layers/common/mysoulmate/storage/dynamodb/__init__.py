"""DynamoDB adapter: single-table events, transactions, exact rollups and sharded user sets."""
