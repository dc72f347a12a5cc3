"""``/api/v1/auth/key``: manage API keys (admin role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from omops.catalog.keys import ALL_BUCKETS, ApiKey
from omops.errors import Forbidden, NotFound
from omops.server._auth import Scope
from omops.server._deps import admin
from omops.server._payload import to_json_bytes

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class NewKey(BaseModel):
    role: str = Field(pattern="^(read|write|admin)$")
    buckets: list[Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9_.\-]{1,64})$")]] = Field(
        min_length=1, max_length=100
    )
    note: str = Field(default="", max_length=200)


def _manages(scope: Scope, buckets: list[str]) -> bool:
    """An admin key manages keys only within its own buckets; no key (loopback) manages all."""
    if scope.key is None or ALL_BUCKETS in scope.key.buckets:
        return True
    return all(b != ALL_BUCKETS and b in scope.key.buckets for b in buckets)


def _key(scope: Scope, key_id: str) -> ApiKey:
    for key in scope.om.catalog.api_keys.list():
        if key.id == key_id and _manages(scope, key.buckets):
            return key
    raise NotFound(f"no active API key {key_id!r} that this key may manage; see `om auth list`")


@router.get("/key", summary="List active API keys (those within the caller's buckets)")
def list_keys(scope: Annotated[Scope, Depends(admin)]) -> Response:
    keys = [k.to_dict() for k in scope.om.catalog.api_keys.list() if _manages(scope, k.buckets)]
    return Response(to_json_bytes({"keys": keys}), media_type="application/json")


@router.post("/key", summary="Create an API key (the token is shown once)", status_code=201)
def create_key(new: NewKey, scope: Annotated[Scope, Depends(admin)]) -> Response:
    if not _manages(scope, new.buckets):
        assert scope.key is not None
        raise Forbidden(
            f"key {scope.key.id} is admin on {', '.join(scope.key.buckets)} only; "
            f"it may not create a key for {', '.join(new.buckets)}"
        )
    token, key = scope.om.catalog.api_keys.create(role=new.role, buckets=new.buckets, note=new.note)
    return Response(
        to_json_bytes({"token": token, **key.to_dict()}),
        status_code=201,
        media_type="application/json",
    )


@router.delete("/key/{key_id}", summary="Revoke an API key")
def revoke_key(key_id: str, request: Request, scope: Annotated[Scope, Depends(admin)]) -> Response:
    scope.om.catalog.api_keys.revoke(_key(scope, key_id).id)
    request.app.state.access.forget(key_id)
    return Response(to_json_bytes({"revoked": key_id}), media_type="application/json")
