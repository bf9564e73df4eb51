"""Getting observations to the service: an on-disk outbox and a sender with backoff."""
