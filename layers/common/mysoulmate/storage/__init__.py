"""Storage adapters of the analytics `EventStore` port: `sqlite` (laptop), `dynamodb` and
`postgres` (Aurora); `paging` (keyset cursors) and `bitmap` shared by them."""
