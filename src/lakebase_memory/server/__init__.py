"""The HTTP server: Responses-compatible agent endpoints, thread API, health."""

from lakebase_memory.server.app import create_app

__all__ = ["create_app"]
