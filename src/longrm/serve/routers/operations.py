"""Operations: liveness and load (/health), Prometheus metrics (/metrics); no API key."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from longrm.serve.deps import Service
from longrm.serve.schemas import HealthResponse

router = APIRouter()


@router.get("/health")
async def health(service: Service) -> HealthResponse:
    """Liveness and load: a probe needs no API key."""
    return HealthResponse(**service.health())


@router.get("/metrics", response_class=PlainTextResponse)
async def prometheus(service: Service) -> Response:
    """Prometheus exposition; a scraper needs no API key."""
    return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
