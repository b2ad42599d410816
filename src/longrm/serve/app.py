"""The FastAPI app: one `RewardService` and a router per contract family over it.

The layout follows vLLM's entrypoints (routers apart from the serving object): the routers
(`serve/routers/`) validate and translate bodies, the service (`service.py`) holds the model,
its queue and the tokenizers, `errors.py` gives every error the one `ErrorResponse` shape, and
the middleware here limits body sizes and counts requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from longrm.rm.base import RewardModel
from longrm.serve.errors import install_error_handlers
from longrm.serve.limits import BodyLimit
from longrm.serve.metrics import RequestMetrics
from longrm.serve.routers import longrm_api, openai_chat, openrlhf_verl, operations, slime
from longrm.serve.service import RewardService, ServeSettings

__all__ = ["ServeSettings", "create_app", "endpoints"]

ROUTERS = (longrm_api, openrlhf_verl, slime, openai_chat, operations)


def endpoints() -> list[str]:
    """Return the paths the routers serve, in router order."""
    return [str(getattr(r, "path", "")) for m in ROUTERS for r in m.router.routes]


def create_app(
    model: RewardModel, settings: ServeSettings, policy_tokenizer: Any | None = None
) -> FastAPI:
    """Return the service for `model`; the model's worker starts and stops with the app.

    `policy_tokenizer` (else `settings.policy_template`, loaded) is the tokenizer whose chat
    template rendered the texts RL frameworks send.
    """
    service = RewardService(model, settings, policy_tokenizer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.start()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="longrm reward service", lifespan=lifespan)
    app.state.service = service
    for module in ROUTERS:
        app.include_router(module.router)
    paths = frozenset(endpoints())
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=service.metrics, endpoints=lambda: paths)
    install_error_handlers(app)
    return app
