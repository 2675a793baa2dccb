"""Token management (admin only)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field, StringConstraints

from api.app import require_role
from api.auth import Principal, create_token, list_tokens, revoke_token

router = APIRouter(tags=["admin"])


StoreId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$")]


class NewToken(BaseModel):
    role: Literal["viewer", "analyst", "admin"]
    stores: list[StoreId] | None = Field(None, max_length=1000, description="stores granted; omit for all stores")
    name: str = Field("", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", description="a label (no control characters)")
    expires_days: float | None = Field(None, gt=0, le=3650, strict=True)  # strict: JSON true is not 1 day


@router.get("/tokens", summary="List API tokens (admin)")
def get_tokens(request: Request, _: Principal = Depends(require_role("admin"))) -> list[dict[str, Any]]:
    with request.app.state.db.connection() as conn:
        return list_tokens(conn)


@router.post("/tokens", status_code=201, summary="Create an API token (admin); the token is shown once")
def post_token(request: Request, body: NewToken, _: Principal = Depends(require_role("admin"))) -> dict[str, Any]:
    with request.app.state.db.connection() as conn:
        token_id, token = create_token(conn, body.role, body.stores, body.name, body.expires_days)
    return {"token_id": token_id, "token": token, "role": body.role, "stores": body.stores}


@router.delete("/tokens/{token_id}", summary="Revoke an API token (admin)")
def delete_token(request: Request, token_id: int, _: Principal = Depends(require_role("admin"))) -> dict[str, Any]:
    with request.app.state.db.connection() as conn:
        if not revoke_token(conn, token_id):
            raise HTTPException(404, f"no active token {token_id}")
    request.app.state.tokens.forget(token_id)  # the NOTIFY reaches this server too, a moment later
    return {"token_id": token_id, "revoked": True}
