"""The FastAPI app: thin routes that validate, check limits, queue model calls and answer.

Every model call goes through the reward-model interface (score, compare, rank) on the batcher's
worker thread; the routes only translate between HTTP bodies and those calls. Every error is a
JSON body in OpenAI's shape, and no request can take the server down.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException

from longrm.items import Messages
from longrm.rm.base import RewardModel, Verdict
from longrm.rm.hf_common import HFBackend, PromptTooLongError
from longrm.serve.batching import Batcher, QueueFullError, Unit
from longrm.serve.chat_text import ChatText, ChatTextError
from longrm.serve.generation import complete, generation_backend
from longrm.serve.limits import BodyLimit
from longrm.serve.metrics import ServeMetrics
from longrm.serve.schemas import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChoiceLogprobs,
    ClassifyData,
    ClassifyRequest,
    ClassifyResponse,
    CompareRequest,
    CompareResponse,
    RankRequest,
    RankResponse,
    RewardRequest,
    RewardResponse,
    ScoreRequest,
    ScoreResponse,
    Usage,
)

#: kinds whose scores are rewards (a Bradley-Terry difference is a preference probability)
REWARD_KINDS = ("scalar", "likelihood")


@dataclass
class ServeSettings:
    """Limits and behaviour of the service; every field is a `longrm serve` flag."""

    model_name: str = "longrm"
    kind: str = "scalar"
    api_key: str | None = None
    max_body_bytes: int = 32 * 1024 * 1024
    max_request_tokens: int = 1 << 20
    queue_size: int = 64
    max_batch: int = 16
    batch_wait: float = 0.005
    request_timeout: float = 600.0
    max_new_tokens: int = 256
    unscored_reward: float | None = None  # /get_reward's number where the model gave none


class ApiError(Exception):
    """An error answer: status, message, and the field at fault when there is one."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    504: "timeout_error",
}


def _error(status: int, message: str, param: str | None = None, **headers: str) -> JSONResponse:
    body = {
        "error": {
            "message": message,
            "type": _ERROR_TYPES.get(status, "server_error"),
            "param": param,
            "code": status,
        }
    }
    return JSONResponse(body, status_code=status, headers=headers or None)


def _finite(value: float | None) -> float | None:
    """Return the value, or None for NaN and infinities (no score; JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None


def _prompt_key(prompt: Messages) -> str:
    return hashlib.sha1(json.dumps(prompt, sort_keys=True).encode()).hexdigest()


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def create_app(model: RewardModel, settings: ServeSettings) -> FastAPI:
    """Return the service for `model`; the model's worker starts and stops with the app."""
    tokenizer = None
    if isinstance(model, HFBackend):
        from transformers import AutoTokenizer

        # The worker thread uses the model's tokenizer; a fast tokenizer used from two threads
        # at once can fail ("Already borrowed"), so the routes get a copy of their own.
        tokenizer = AutoTokenizer.from_pretrained(model.loaded.path)
    chat_text = ChatText(tokenizer)
    generator = generation_backend(model)
    batcher: Batcher | None = None
    metrics = ServeMetrics(lambda: batcher.depth if batcher is not None else 0)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        nonlocal batcher
        batcher = Batcher(
            model,
            queue_size=settings.queue_size,
            max_batch=settings.max_batch,
            batch_wait=settings.batch_wait,
            on_batch=metrics.batch_size.observe,
        )
        try:
            yield
        finally:
            batcher.close()

    app = FastAPI(title="longrm reward service", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    known_paths: set[str] = set()

    @app.middleware("http")
    async def count_requests(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        endpoint = request.url.path if request.url.path in known_paths else "other"
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            metrics.requests.labels(endpoint, str(status)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        extra = {"Retry-After": "1"} if err.status == 429 else {}
        return _error(err.status, err.message, err.param, **extra)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, err: HTTPException) -> JSONResponse:
        return _error(err.status_code, str(err.detail), **(err.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        param = None
        for e in err.errors():
            loc = [str(p) for p in e.get("loc", ()) if p != "body"]
            field = ".".join(loc) or "body"
            param = param or field
            problems.append(f"{field}: {e.get('msg', 'invalid')}")
        return _error(422, "; ".join(problems) or "invalid request", param)

    @app.exception_handler(Exception)
    async def unexpected_error(_: Request, err: Exception) -> JSONResponse:
        return _error(500, f"{type(err).__name__}: {err}")

    bearer = HTTPBearer(auto_error=False)

    async def check_key(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if settings.api_key is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not secrets.compare_digest(given.encode(), settings.api_key.encode()):
            raise HTTPException(
                401,
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def count_tokens(endpoint: str, texts: Sequence[str]) -> int:
        """Return the request's tokens (texts as given, template markup aside); 413 over the
        limit. Without a local tokenizer (openai models) a token counts as 4 bytes.
        """
        if tokenizer is not None:
            n = sum(
                len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]
            )
        else:
            n = sum(len(t.encode("utf-8")) for t in texts) // 4
        if n > settings.max_request_tokens:
            raise ApiError(
                413,
                f"the request holds {n} tokens and this server accepts at most "
                f"{settings.max_request_tokens} per request (--max-request-tokens): split it",
            )
        metrics.tokens.labels(endpoint, "prompt").inc(n)
        return n

    async def run(units: list[Unit]) -> list[Any]:
        """Queue the units and wait for their results within the request timeout."""
        assert batcher is not None
        try:
            future = batcher.submit(units)
        except QueueFullError:
            raise ApiError(
                429, f"the server is busy: all {settings.queue_size} queue places are taken"
            ) from None
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout)
        except TimeoutError:
            raise ApiError(
                504, f"no answer within {settings.request_timeout:g} s (--request-timeout)"
            ) from None
        except PromptTooLongError as err:
            raise ApiError(413, str(err)) from None
        except (ValueError, ChatTextError) as err:
            raise ApiError(422, str(err)) from None
        except Exception as err:
            status = 502 if type(err).__module__.startswith("openai") else 500
            raise ApiError(status, f"{type(err).__name__}: {err}") from None

    def message_texts(prompt: Messages, responses: Sequence[str]) -> list[str]:
        return [m["content"] for m in prompt] + list(responses)

    guarded = [Depends(check_key)]

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and load: a probe needs no API key."""
        return {
            "status": "ok",
            "model": settings.model_name,
            "kind": settings.kind,
            "queue_depth": batcher.depth if batcher else 0,
            "queue_size": settings.queue_size,
            "busy": batcher.busy if batcher else False,
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus exposition; a scraper needs no API key."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=guarded)
    async def models() -> dict[str, Any]:
        """The one model served, as OpenAI lists models."""
        return {
            "object": "list",
            "data": [{"id": settings.model_name, "object": "model", "owned_by": "longrm"}],
        }

    @app.post("/v1/score", dependencies=guarded)
    async def score(body: ScoreRequest) -> ScoreResponse:
        """One pointwise reward per response."""
        prompt = body.prompt_messages()
        count_tokens("/v1/score", message_texts(prompt, body.responses))
        key = _prompt_key(prompt)
        values = await run(
            [Unit(key, lambda m, r=r: m.score(prompt, r)) for r in body.responses]  # type: ignore[misc]
        )
        return ScoreResponse(model=settings.model_name, scores=[_finite(v) for v in values])

    def scores_of(verdict: Verdict) -> list[float | None] | None:
        return None if verdict.scores is None else [_finite(s) for s in verdict.scores]

    @app.post("/v1/compare", dependencies=guarded)
    async def compare(body: CompareRequest) -> CompareResponse:
        """Which of two responses is better, with P(first is better) where the model has one."""
        prompt = body.prompt_messages()
        count_tokens("/v1/compare", message_texts(prompt, body.responses))
        first, second = body.responses
        [verdict] = await run(
            [Unit(_prompt_key(prompt), lambda m: m.compare(prompt, first, second))]
        )
        probability = None
        scores = scores_of(verdict)
        if scores is not None and None not in scores:
            a, b = float(scores[0] or 0.0), float(scores[1] or 0.0)
            probability = _sigmoid(a - b) if settings.kind in REWARD_KINDS else a / (a + b or 1.0)
        return CompareResponse(
            model=settings.model_name,
            preferred=verdict.ranking[0] if verdict.ranking else None,
            probability=probability,
            scores=scores,
            text=verdict.text,
            truncated=verdict.truncated,
            error=verdict.error,
        )

    @app.post("/v1/rank", dependencies=guarded)
    async def rank(body: RankRequest) -> RankResponse:
        """N responses ordered best first."""
        prompt = body.prompt_messages()
        count_tokens("/v1/rank", message_texts(prompt, body.responses))
        responses = body.responses
        [verdict] = await run([Unit(_prompt_key(prompt), lambda m: m.rank(prompt, responses))])
        return RankResponse(
            model=settings.model_name,
            ranking=verdict.ranking,
            best=verdict.ranking[0] if verdict.ranking else None,
            scores=scores_of(verdict),
            text=verdict.text,
            truncated=verdict.truncated,
            error=verdict.error,
        )

    def split(texts: Sequence[str], prompts: Sequence[str] | None, field: str) -> list[Unit]:
        units = []
        for i, text in enumerate(texts):
            try:
                prompt, response = chat_text.split(text, prompts[i] if prompts else None)
            except ChatTextError as err:
                raise ApiError(422, f"{field}[{i}]: {err}", f"{field}[{i}]") from None
            units.append(
                Unit(_prompt_key(prompt), lambda m, p=prompt, r=response: m.score(p, r))  # type: ignore[misc]
            )
        return units

    @app.post("/get_reward", dependencies=guarded)
    async def get_reward(body: RewardRequest) -> RewardResponse:
        """OpenRLHF's remote reward model: one reward per query."""
        count_tokens("/get_reward", body.query)
        values = [_finite(v) for v in await run(split(body.query, body.prompts, "query"))]
        scored = [0.0 if v is None else 1.0 for v in values]
        rewards = [settings.unscored_reward if v is None else v for v in values]
        return RewardResponse(rewards=rewards, scores=rewards, extra_logs={"scored": scored})

    @app.post("/classify", dependencies=guarded)
    async def classify(body: ClassifyRequest) -> ClassifyResponse:
        """vLLM's classification shape, one class: the reward (or its sigmoid)."""
        texts = body.texts()
        n = count_tokens("/classify", texts)
        values = [_finite(v) for v in await run(split(texts, None, "input"))]
        squash = body.apply_activation()
        data = [
            ClassifyData(
                index=i,
                label="reward",
                probs=[None if v is None else (_sigmoid(v) if squash else v)],
                num_classes=1,
            )
            for i, v in enumerate(values)
        ]
        return ClassifyResponse(
            id=f"classify-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=body.model or settings.model_name,
            data=data,
            usage=Usage(prompt_tokens=n, total_tokens=n),
        )

    @app.post("/v1/chat/completions", dependencies=guarded)
    async def chat_completions(body: ChatCompletionRequest) -> ChatCompletionResponse:
        """OpenAI chat completions from the local judge (causal LMs only)."""
        if generator is None:
            raise ApiError(
                400,
                f"the served model ({settings.kind}) cannot generate: chat completions need an "
                "in-process causal LM (--kind judge or likelihood)",
                "model",
            )
        count_tokens("/v1/chat/completions", [m.content for m in body.messages])
        key = _prompt_key([m.model_dump() for m in body.messages])
        [done] = await run(
            [Unit(key, lambda _: complete(generator, body, settings.max_new_tokens))]
        )
        metrics.tokens.labels("/v1/chat/completions", "generated").inc(done.completion_tokens)
        return ChatCompletionResponse(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            created=int(time.time()),
            model=body.model or settings.model_name,
            choices=[
                Choice(
                    message=AssistantMessage(content=done.text),
                    finish_reason=done.finish_reason,
                    logprobs=None
                    if done.logprobs is None
                    else ChoiceLogprobs(content=done.logprobs),
                )
            ],
            usage=Usage(
                prompt_tokens=done.prompt_tokens,
                completion_tokens=done.completion_tokens,
                total_tokens=done.prompt_tokens + done.completion_tokens,
            ),
        )

    known_paths.update(getattr(r, "path", "") for r in app.routes)
    return app
