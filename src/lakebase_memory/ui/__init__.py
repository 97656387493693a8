"""The web chat UI: static files served by the app itself (no CDN, no Node at run time).

Only files: what the page asks the server (`/api/me`, `/api/threads`, `/api/memories`,
`/responses`) is the server's (`lakebase_memory.server`), so this package depends on nothing
of the project."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"

# The page loads only its own files; even if sanitising failed, an injected inline script,
# event handler or foreign resource would not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)

UI_PATHS = ("/static/",)  # and "/": the page; the security headers middleware uses these

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(
        STATIC / "index.html",
        headers={"Cache-Control": "no-cache"},  # its CSP comes with the security headers
    )


def mount_ui(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
