"""lakebase-memory: an agent server whose conversations persist in PostgreSQL."""

__version__ = "0.1.0"
