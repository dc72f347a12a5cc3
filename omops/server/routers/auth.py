"""``/api/v1/auth/key``: manage API keys (admin role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

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


@router.get("/key", summary="List active API keys")
def list_keys(scope: Annotated[Scope, Depends(admin)]) -> Response:
    keys = [k.to_dict() for k in scope.om.catalog.api_keys.list()]
    return Response(to_json_bytes({"keys": keys}), media_type="application/json")


@router.post("/key", summary="Create an API key (the token is shown once)", status_code=201)
def create_key(new: NewKey, scope: Annotated[Scope, Depends(admin)]) -> Response:
    token, key = scope.om.catalog.api_keys.create(role=new.role, buckets=new.buckets, note=new.note)
    return Response(
        to_json_bytes({"token": token, **key.to_dict()}),
        status_code=201,
        media_type="application/json",
    )


@router.delete("/key/{key_id}", summary="Revoke an API key")
def revoke_key(key_id: str, scope: Annotated[Scope, Depends(admin)]) -> Response:
    scope.om.catalog.api_keys.revoke(key_id)
    return Response(to_json_bytes({"revoked": key_id}), media_type="application/json")
