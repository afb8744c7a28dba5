"""Cross-site request forgery: a dashboard form posted from any page but the dashboard's own is refused.

The login cookie is ``SameSite=Strict``, but browsers judge *sites*, not origins: every port of one host is
the same site, so a page served from ``127.0.0.1:OTHERPORT`` can post a form to the dashboard and the browser
sends the releaser's cookie with it. Two checks close that, each enough on its own in a current browser:

- **the Origin check** — a POST whose ``Origin`` (or, without one, ``Referer``) names another origin than the
  request's own (scheme, host and port of its ``Host``) is refused. Browsers send ``Origin`` with every form
  POST; requests with neither header (curl, scripts) are judged by the token alone.
- **the form token** — every form carries ``csrf``, an HMAC-SHA256 of the session's cookie (the token the
  login stored) under a key only this server process holds, and a POST that the cookie authenticates must
  carry it. Why an HMAC of the session and not a double-submit cookie: cookies ignore ports, so the very page
  this defends against (another port of the same host) can set or overwrite a "CSRF cookie" of ours and then
  submit the matching value; it cannot compute an HMAC without the key, and it cannot read the page that
  carries one (another origin). Keyed rather than a plain hash of the token, because the registry stores the
  token's sha256: whoever reads the database must not be able to derive a form token. The key is random per
  process, so a restarted server refuses forms from pages it served before (reload the page); the token
  changes with the login, so a form from an earlier session is refused too.

What the token does not cover, and why: a POST authenticated by an ``Authorization`` header (the roles
test, scripts) carries no ambient credential — a page can add that header only with ``fetch``, which needs
a CORS preflight this server never grants — and the two public forms, login (no session yet: a token there
would need a pre-session cookie, the double-submit scheme above) and logout (it only drops the cookie), are
guarded by the Origin check alone.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request

from loopgate.server.auth import COOKIE, bearer

FIELD = "csrf"  # the hidden input every dashboard form carries
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# the server's secret: random per process (see the module docstring)
KEY = secrets.token_bytes(32)


def form_token(session: str | None, key: bytes = KEY) -> str:
    """The ``csrf`` value of the forms served to ``session`` (the login cookie); empty without one."""
    if not session:
        return ""
    return hmac.new(key, b"loopgate-csrf:" + session.encode(), hashlib.sha256).hexdigest()


def session_of(request: Request) -> str | None:
    """The ambient credential a forged form would ride on: the login cookie, when no header authenticates."""
    if bearer(request, cookie=False) is not None:
        return None
    return request.cookies.get(COOKIE) or None


def _origin(url: str) -> tuple[str, str, int] | None:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return None
    if not scheme or not parts.hostname:
        return None
    return scheme, parts.hostname.lower(), port or _DEFAULT_PORTS.get(scheme, 0)


def own_origin(request: Request) -> str:
    """The origin this request was sent to: its scheme and its ``Host`` header (Starlette builds the URL from it)."""
    return f"{request.url.scheme}://{request.url.netloc}"


def foreign_origin(request: Request) -> str | None:
    """The other origin this request says it came from (``Origin``, else ``Referer``), or None when it names
    none or this server's own. ``Origin: null`` (a sandboxed frame, a ``data:`` page) counts as foreign."""
    sent = request.headers.get("origin")
    if sent is None:
        referer = request.headers.get("referer")
        if not referer:
            return None
        sent = referer
    came_from = _origin(sent)
    if came_from is not None and came_from == _origin(own_origin(request)):
        return None
    parts = urlsplit(sent)
    return f"{parts.scheme}://{parts.netloc}" if came_from is not None else sent[:100]


async def refusal(request: Request, *, public: bool) -> str | None:
    """Why this dashboard request must be refused as a possible forgery (403), or None when it may proceed."""
    if request.method in SAFE_METHODS:
        return None
    foreign = foreign_origin(request)
    if foreign is not None:
        return (f"this form was posted from {foreign}, not from the dashboard ({own_origin(request)}); the "
                "dashboard accepts forms only from its own pages. Open the dashboard and use its buttons.")
    session = session_of(request)
    if public or session is None:
        return None  # the Origin check alone (public forms), or no cookie: the role check answers 401
    sent = (await request.form()).get(FIELD)
    expected = form_token(session)
    # bytes: compare_digest refuses non-ASCII str, and a posted field may hold anything
    if isinstance(sent, str) and hmac.compare_digest(sent.encode(), expected.encode()):
        return None
    why = "has no CSRF token" if not sent else "has a CSRF token that does not match your session"
    return (f"this form {why} (a restarted server or a new login changes it; a page on another site cannot "
            "know it). Reload the page and submit the form again.")
