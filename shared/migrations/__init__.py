"""Alembic migrations of the project's database (every service's tables, SQLite and PostgreSQL).

``env.py`` is the Alembic environment, ``versions/`` holds the revisions. ``shared.db.upgrade_db``
runs them programmatically; ``mdd db`` and the plain ``alembic`` command (configured in
pyproject.toml) run them by hand.
"""
