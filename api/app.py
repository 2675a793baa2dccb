"""The FastAPI application: JSON API under /api/v1 and the dashboard pages that are built on it.

Every dashboard view fetches its data from a JSON endpoint of this same app, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from psycopg.errors import DataError, QueryCanceled
from psycopg_pool import PoolTimeout
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, TokenCache, hash_token, lookup_token
from api.database import Database, TooManyRows
from storeflow.contract import BadInput
from storeflow.settings import Settings, get_settings

__all__ = ["create_app", "principal", "require_role", "store_guard"]

STATIC = Path(__file__).parent / "static"
_bearer = HTTPBearer(auto_error=False, description="API token: `storeflow token create --role viewer --store S`")
_cookie = APIKeyCookie(name="storeflow_token", auto_error=False)
_LOCAL = Principal(0, "local (auth off)", "admin", None)


class Problem(BaseModel):
    """An error: what is wrong, in one sentence."""

    detail: str


class InvalidRequest(Problem):
    """A parameter or body failed validation: ``detail`` names the first one, ``errors`` lists them."""

    errors: list[dict[str, Any]]


#: the error responses every /api/v1 operation may give (documented in the OpenAPI schema)
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "bad input (a period, floor, cell size or store that does not fit)"},
    401: {"model": Problem, "description": "missing, invalid, expired or revoked token"},
    403: {"model": Problem, "description": "the token's role or stores do not allow this"},
    404: {"model": Problem, "description": "unknown store, floor, member or token"},
    413: {"model": Problem, "description": "more rows than the row cap: narrow the period"},
    422: {"model": InvalidRequest, "description": "a parameter or the body is invalid"},
    503: {"model": Problem, "description": "the query hit the time limit (narrow the period) or the server is busy"},
}


async def principal(request: Request, bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                    cookie: str | None = Depends(_cookie)) -> Principal:
    """The caller, from an `Authorization: Bearer` header or the dashboard's cookie."""
    db: Database = request.app.state.db
    if not db.settings.api_auth:
        return _LOCAL
    token = bearer.credentials if bearer else cookie
    if not token:
        raise HTTPException(401, "missing API token (Authorization: Bearer <token>)",
                            headers={"WWW-Authenticate": "Bearer"})
    tokens: TokenCache = request.app.state.tokens
    token_hash = hash_token(token)
    who = tokens.get(token_hash)  # most requests: no query, no thread
    if who is None:
        who = await run_in_threadpool(_verify_token, db, tokens, token, token_hash)
    if who is None:
        raise HTTPException(401, "invalid, expired or revoked API token", headers={"WWW-Authenticate": "Bearer"})
    return who


#: last_used_at is refreshed at most this often (seconds), so requests with one token do not queue on
#: a write to its row; it is also how long a verified token stays in the server's TokenCache
TOKEN_TOUCH_S = 60


def _verify_token(db: Database, tokens: TokenCache, token: str, token_hash: str) -> Principal | None:
    """Check a token in the database (like :func:`api.auth.lookup_token`, but a read on most requests)
    and keep it in the cache when valid."""
    generation = tokens.generation
    with db.connection() as conn:
        row = conn.execute(
            "SELECT token_id, name, role, stores, last_used_at > now() - make_interval(secs => %s), expires_at "
            "FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL "
            "AND (expires_at IS NULL OR expires_at > now())",
            (TOKEN_TOUCH_S, token_hash)).fetchone()
        if row is None:
            return None
        who: Principal | None = Principal(int(row[0]), row[1], row[2], tuple(row[3]) if row[3] is not None else None)
        if not row[4]:
            who = lookup_token(conn, token)  # also sets last_used_at
        conn.commit()
    if who is not None:
        tokens.put(token_hash, who, row[5], generation)
    return who


def require_role(role: str):  # type: ignore[no-untyped-def]
    """Dependency: the caller must have at least this role."""

    async def check(who: Principal = Depends(principal)) -> Principal:
        if not who.at_least(role):
            raise HTTPException(403, f"this needs the {role} role; your token has {who.role}")
        return who

    return check


def store_guard(request: Request, store: str, who: Principal) -> None:
    """403 when the caller may not see the store, 404 when it does not exist."""
    if not who.can_see(store):
        raise HTTPException(403, f"your token is not granted store {store!r}")
    db: Database = request.app.state.db
    if not db.fetch("SELECT 1 FROM stores WHERE store = %s", (store,)):
        raise HTTPException(404, f"unknown store {store!r}")


def create_app(settings: Settings | None = None, database_url: str | None = None) -> FastAPI:
    """Build the app. The database pool opens at startup (migrating the schema)."""
    s = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = Database(s, database_url)
        await app.state.db.open_async()
        app.state.tokens = TokenCache(app.state.db.url if s.api_auth else None, ttl_s=TOKEN_TOUCH_S)
        app.state.tokens.start()
        try:
            yield
        finally:
            app.state.tokens.close()
            await app.state.db.close_async()
            app.state.db.close()

    app = FastAPI(
        title="StoreFlow API",
        version="1.0",
        description="In-store traffic analytics: counter performance, store KPIs, paths, heatmaps, traffic. "
        "Every dashboard view has a JSON twin here. Authenticate with `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )

    @app.exception_handler(BadInput)
    async def bad_input(_: Request, exc: BadInput) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(TooManyRows)
    async def too_many(_: Request, exc: TooManyRows) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413)

    @app.exception_handler(DataError)
    async def bad_value(_: Request, exc: DataError) -> JSONResponse:
        # a value the database cannot hold (a NUL in text, a number out of range): the caller's input
        return JSONResponse({"detail": f"invalid value: {str(exc).splitlines()[0]}"}, status_code=400)

    @app.exception_handler(PoolTimeout)
    async def busy(_: Request, exc: PoolTimeout) -> JSONResponse:
        # every pooled connection stayed busy for the pool's timeout: overload, not a bug of the request
        return JSONResponse({"detail": "the server is busy; try again in a moment"}, status_code=503,
                            headers={"Retry-After": "5"})

    @app.exception_handler(QueryCanceled)
    async def timeout(_: Request, exc: QueryCanceled) -> JSONResponse:
        return JSONResponse({"detail": "the query took too long; narrow the time range"}, status_code=503)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}", "errors": errs[:10]},
                            status_code=422)

    from api.views import dashboard, reports, stores, tokens

    for module in (stores, reports, tokens):
        app.include_router(module.router, prefix="/api/v1", responses=ERRORS)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
