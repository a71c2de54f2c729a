"""Event backends, one module each: ``sql`` (SQLite and PostgreSQL, the default), ``nats``
(JetStream), ``memory`` (tests only)."""
