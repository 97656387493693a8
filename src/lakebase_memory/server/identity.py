"""Who is calling. Forwarded identity headers are trusted only where a proxy sets them.

On Databricks Apps the platform's proxy sets X-Forwarded-Email / X-Forwarded-User and strips
any a client sends; anywhere else a client could forge them, so they are ignored and every
caller is the one local user (TRUST_FORWARDED_IDENTITY overrides the default).
"""

from __future__ import annotations

from fastapi import Request

from lakebase_memory.config import Settings
from lakebase_memory.server.errors import ApiError

FORWARDED_HEADERS = ("x-forwarded-email", "x-forwarded-user", "x-forwarded-preferred-username")


def caller_id(request: Request, settings: Settings) -> str:
    if not settings.trusts_forwarded_identity:
        return settings.local_user
    for header in FORWARDED_HEADERS:
        value = request.headers.get(header, "").strip()
        if value:
            return value
    raise ApiError(
        401,
        "unauthenticated",
        "No user identity: this server takes the user from X-Forwarded-Email or "
        "X-Forwarded-User, which the Databricks Apps proxy sets. Call it through the app URL.",
    )
