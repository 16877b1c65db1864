"""The dashboard's guards: an optional token on every request, CSRF on every action.

The token (``durable_dashboard_token``) is accepted as ``Authorization: Bearer <token>``
(scripts, Prometheus) or as the password of HTTP basic authentication with any user name
(a browser asks for it: the 401 carries ``WWW-Authenticate: Basic``). Actions are POST
forms whose ``csrf_token`` field must equal the ``durable_csrf`` cookie (double submit; the
cookie is ``SameSite=Strict`` and ``HttpOnly``, so another site can neither send it nor
read it).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

CSRF_COOKIE = "durable_csrf"
CSRF_FIELD = "csrf_token"


def token_in(authorization: str) -> str | None:
    """The token an ``Authorization`` header carries (Bearer, or basic's password)."""
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


class TokenAuth:
    """ASGI middleware: 401 for any HTTP request without the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
            given = token_in(header)
            if given is None or not hmac.compare_digest(given.encode(), self.token):
                response = PlainTextResponse(
                    "401 Unauthorized: this dashboard needs its token",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Basic realm="celery-durable", charset="UTF-8"'},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def csrf_token(request: Request) -> str:
    """The token forms must send back: the cookie's, or a new one (set by ``remember``)."""
    known = request.cookies.get(CSRF_COOKIE)
    if known and len(known) >= 32:
        return known
    state: Any = request.state
    if getattr(state, "new_csrf", None) is None:
        state.new_csrf = secrets.token_urlsafe(32)
    return str(state.new_csrf)


def remember(request: Request, response: Response) -> Response:
    """Set the CSRF cookie on a page that handed out a new token."""
    new = getattr(request.state, "new_csrf", None)
    if new is not None:
        response.set_cookie(
            CSRF_COOKIE,
            new,
            httponly=True,
            samesite="strict",
            path=request.scope.get("root_path") or "/",
        )
    return response


def csrf_ok(request: Request, form: Any) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    return bool(cookie) and isinstance(sent, str) and hmac.compare_digest(cookie, sent)
