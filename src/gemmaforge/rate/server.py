"""The rating web page: a small Starlette app over RatingStore, served by uvicorn.

The page is static HTML+JS (no CDN, no build step); the API returns JSON only, so response texts
reach the browser as data and are rendered by `app.js` through DOM text nodes, never as HTML.
A Content-Security-Policy forbids inline scripts and foreign resources as a second line of defence.
"""

from __future__ import annotations

import json
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from .errors import AlreadyRated, RateError, UnknownPair
from .store import RatingStore

STATIC = Path(__file__).with_name("static")
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STATUS = {UnknownPair: 404, AlreadyRated: 409}
LOOPBACK = ["127.0.0.1", "localhost", "::1"]


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request, call_next):
        response = await call_next(request)
        response.headers.update(HEADERS)
        return response


async def _json(request: Request) -> dict:
    """The body of a POST: a JSON object sent as application/json, which a cross-site form cannot send
    without a CORS preflight (and this server grants none)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise RateError("send the request as application/json")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RateError("the request body must be JSON") from None
    if not isinstance(body, dict):
        raise RateError("the request body must be a JSON object")
    return body


def create_app(store: RatingStore, allowed_hosts: list[str] | None = None) -> Starlette:
    """The app; `allowed_hosts` (Host headers accepted) stops DNS rebinding when serving on loopback."""
    def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    def next_pair(request: Request) -> JSONResponse:
        rater = request.query_params.get("rater", "")
        pair = store.next_pair(rater)
        return JSONResponse({"pair": pair, "progress": store.progress(rater.strip())})

    async def rate(request: Request) -> JSONResponse:
        body = await _json(request)
        if not isinstance(body.get("pair_id"), int):
            raise RateError('expected {"rater": name, "pair_id": integer, "choice": ..., "reason": optional}')
        rater, reason = body.get("rater"), body.get("reason")
        if not isinstance(rater, str) or not (reason is None or isinstance(reason, str)):
            raise RateError("'rater' and 'reason' must be text")
        await run_in_threadpool(store.rate, rater, body["pair_id"], str(body.get("choice")), reason)
        return JSONResponse({"ok": True, "progress": store.progress(rater.strip())})

    async def undo(request: Request) -> JSONResponse:
        body = await _json(request)
        pair_id = await run_in_threadpool(store.undo, str(body.get("rater", "")))
        return JSONResponse({"ok": True, "pair_id": pair_id})

    async def rate_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=STATUS.get(type(exc), 400))

    return Starlette(
        routes=[Route("/", index), Route("/api/next", next_pair), Route("/api/rate", rate, methods=["POST"]),
                Route("/api/undo", undo, methods=["POST"]),
                Mount("/static", StaticFiles(directory=STATIC), name="static")],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts or ["*"]),
                    Middleware(SecurityHeaders)],
        exception_handlers={RateError: rate_error})
