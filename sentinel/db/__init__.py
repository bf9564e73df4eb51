"""Storage: SQLAlchemy models, engines and the unit of work, for SQLite and PostgreSQL alike."""
