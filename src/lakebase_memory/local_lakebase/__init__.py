"""A local stand-in for Databricks Lakebase: REST control plane, TLS PostgreSQL, real SQL roles."""

from lakebase_memory.local_lakebase.service import LocalLakebase
from lakebase_memory.local_lakebase.state import App, Identity, IdentityKind

__all__ = ["App", "Identity", "IdentityKind", "LocalLakebase"]
