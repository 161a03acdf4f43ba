"""The database: SQLAlchemy models, the engine for the configured URL, Alembic migrations.

PostgreSQL (psycopg 3) in production, a SQLite file as the embedded default. Everything that
touches the database goes through `Database`; migrations are the only source of its schema.
"""
