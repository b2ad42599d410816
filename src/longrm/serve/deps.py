"""What every router depends on: the service of the app, and the API key check."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from longrm.serve.service import RewardService


def get_service(request: Request) -> RewardService:
    """Return the app's service."""
    service: RewardService = request.app.state.service
    return service


Service = Annotated[RewardService, Depends(get_service)]

_bearer = HTTPBearer(auto_error=False)


async def require_key(
    service: Service,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """401 unless the request carries the --api-key (when one is set)."""
    key = service.settings.api_key
    if key is None:
        return
    given = credentials.credentials if credentials is not None else ""
    if not secrets.compare_digest(given.encode(), key.encode()):
        raise HTTPException(
            401,
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
