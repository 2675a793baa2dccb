"""Dashboard pages. Each page is a thin HTML shell whose script fetches the page's JSON twin from
/api/v1 (same origin, same token) and draws it with plotly.js, served locally (no CDN)."""

from __future__ import annotations

import gzip
import hashlib
import html
import threading
from pathlib import Path

import plotly
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "static"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

#: page key -> (title, JSON twins the page reads, a line for the user)
PAGES: dict[str, tuple[str, list[str], str]] = {
    "floor": ("Floor heatmap", ["layout", "heatmap", "counters"],
              "Where shoppers spend time: the darker a square, the more time shoppers spent there. "
              "Hover a counter for its figures."),
    "counters": ("Counter performance", ["counters"],
                 "Which counters attract, hold and convert shoppers. Click a column heading to sort."),
    "paths": ("Paths", ["paths"], "The most frequent walking paths, counter by counter, from the entrance."),
    "traffic": ("Traffic", ["traffic"], "Shoppers entering through the doors, and how many are in the store, by hour; compared with the "
                "previous period of the same length."),
}

_SHELL = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · StoreFlow</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/dashboard.css">
<script src="/plotly.min.js?v={plotly_version}" id="plotly-js" async></script>
</head><body data-page="{page}" data-store="{store}">
<header>
  <a class="brand" href="/">StoreFlow</a>
  <nav>{nav}</nav>
  <form id="controls" onsubmit="return false">
    <label>Store <select id="store"></select></label>
    <label id="floor-label" hidden>Floor <select id="floor"></select></label>
    <label>From <input type="date" id="from"></label>
    <label>To <input type="date" id="to"></label>
    <label id="tier-label" hidden>Tier <select id="tier"><option value="">all</option></select></label>
    <button id="apply" type="submit">Show</button>
  </form>
</header>
<main>
  <h1>{title}</h1><p class="hint">{hint}</p>
  <div id="status" role="status"></div>
  <div id="content"></div>
</main>
<script src="/static/dashboard.js"></script>
</body></html>
"""

_LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>StoreFlow · sign in</title>
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/static/dashboard.css"></head><body>
<main class="login"><h1>StoreFlow</h1>
<form method="get" action="/login"><label>API token <input name="token" type="password" autocomplete="off"
 size="50" required></label> <button type="submit">Sign in</button></form>
<p class="hint">Ask your administrator for a token (<code>storeflow token create --role viewer --store S</code>).</p>
{error}</main></body></html>"""


class _Gzipped:
    """A static file compressed once, on first use (plotly.min.js: 4.9 MB, 1.5 MB gzipped)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._body: tuple[bytes, bytes, str] | None = None

    def get(self) -> tuple[bytes, bytes, str]:
        """(raw bytes, gzip bytes, ETag)."""
        with self._lock:
            if self._body is None:
                raw = self.path.read_bytes()
                self._body = (raw, gzip.compress(raw, 6, mtime=0), f'"{hashlib.sha256(raw).hexdigest()[:32]}"')
            return self._body


_PLOTLY = _Gzipped(PLOTLY_JS)


@router.get("/plotly.min.js")
def plotly_js(request: Request) -> Response:
    # the pages ask for /plotly.min.js?v=<plotly version>: a new version is a new URL, so it may be kept long
    raw, packed, etag = _PLOTLY.get()
    headers = {"Cache-Control": "public, max-age=31536000, immutable" if request.query_params.get("v")
               else "public, max-age=86400", "ETag": etag, "Vary": "Accept-Encoding"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type="application/javascript", headers={**headers, "Content-Encoding": "gzip"})
    return Response(raw, media_type="application/javascript", headers=headers)


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})


@router.get("/login")
def login(request: Request, token: str | None = None) -> HTMLResponse:
    if token:
        from api.auth import lookup_token

        with request.app.state.db.connection() as conn:
            ok = lookup_token(conn, token) is not None
        if ok:
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie("storeflow_token", token, httponly=True, samesite="strict", max_age=30 * 86400)
            return resp  # type: ignore[return-value]
        return HTMLResponse(_LOGIN.format(error='<p class="error">That token is not valid.</p>'), status_code=401)
    return HTMLResponse(_LOGIN.format(error=""))


def _page(request: Request, page: str, store: str = "") -> HTMLResponse:
    db = request.app.state.db
    if db.settings.api_auth and not request.cookies.get("storeflow_token"):
        return RedirectResponse("/login", status_code=303)  # type: ignore[return-value]
    title, _, hint = PAGES[page]
    nav = " ".join(f'<a href="/{k}" data-nav="{k}"{" aria-current=page" if k == page else ""}>{t}</a>'
                   for k, (t, _, _) in PAGES.items())
    return HTMLResponse(_SHELL.format(title=html.escape(title), page=page, store=html.escape(store),
                                      nav=nav, hint=html.escape(hint), plotly_version=plotly.__version__))


# the pages need no query: served on the event loop, not the thread pool
@router.get("/")
async def home(request: Request) -> HTMLResponse:
    return _page(request, "floor")


@router.get("/{page}")
async def page(request: Request, page: str, store: str = "") -> HTMLResponse:
    if page not in PAGES:
        return HTMLResponse("<h1>Not found</h1>", status_code=404)
    return _page(request, page, store)
