"""Persistent state behind small interfaces: SQLite embedded by default, PostgreSQL to scale out."""
