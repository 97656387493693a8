"""Security headers on every response, added by one pure ASGI middleware.

The UI's pages and files get a Content-Security-Policy that lets them load only their own
files (see `ui.CONTENT_SECURITY_POLICY`); API answers are data, so theirs forbids everything.
Every response says not to sniff content types, not to be framed by another site and not to
send its address on to other sites. The OpenAPI pages (/docs, /redoc) load FastAPI's Swagger
UI from its CDN, so they keep the framing and sniffing rules but no CSP.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
    "Referrer-Policy": "same-origin",
}
DOC_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    def __init__(self, app: ASGIApp, ui_policy: str, ui_paths: tuple[str, ...]) -> None:
        self.app = app
        self.ui_policy = ui_policy
        self.ui_paths = ui_paths

    def policy_for(self, path: str) -> str | None:
        if path.startswith(DOC_PATHS):
            return None
        if path == "/" or path.startswith(self.ui_paths):
            return self.ui_policy
        return API_CONTENT_SECURITY_POLICY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy_for(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON_HEADERS.items():
                    headers.setdefault(name, value)
                if policy is not None:
                    headers.setdefault("Content-Security-Policy", policy)
            await send(message)

        await self.app(scope, receive, send_with_headers)
