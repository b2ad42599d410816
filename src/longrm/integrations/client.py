"""The HTTP client the trainer integrations share: `POST /v1/score` with retries.

A trainer sends one request per prompt with all of that prompt's responses, so the service
encodes the (long) prompt once for the group. A busy service answers 429 with `Retry-After`, and
an overloaded or restarting one 502/503/504 or a refused connection: those are retried with
backoff (httpx-retries); any other error is raised with the service's own message, which names
the field at fault.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from httpx_retries import Retry, RetryTransport
from pydantic import ValidationError

from longrm.items import Messages
from longrm.serve.schemas import ScoreRequest, ScoreResponse

#: slime's request timeout, the shortest of the RL frameworks'; the service answers (or 504s) first
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 5
#: what a client should try again: queue full, proxy errors, service restarting, request timeout
RETRY_STATUSES = (429, 502, 503, 504)


class RemoteScoreError(RuntimeError):
    """The service refused a request, gave a malformed answer, or could not be reached."""


def as_messages(prompt: Any, where: str) -> Messages:
    """Return a prompt (text, or chat messages whose content is text or text parts) as messages.

    `where` names the prompt in errors (`prompts[3]`).
    """
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, Sequence) and prompt:
        return [
            {"role": _role(m, f"{where}[{i}]"), "content": message_text(m, f"{where}[{i}]")}
            for i, m in enumerate(prompt)
        ]
    raise ValueError(
        f"{where}: expected text or a non-empty list of chat messages, got {prompt!r:.80}"
    )


def message_text(message: Any, where: str) -> str:
    """Return a chat message's text: its `content` string, or its text parts joined."""
    if not isinstance(message, Mapping) or "content" not in message:
        raise ValueError(
            f"{where}: expected a chat message with 'role' and 'content', got {message!r:.80}"
        )
    content = message["content"]
    if content is None:  # an assistant turn that only calls tools
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        texts = []
        for j, part in enumerate(content):
            if not (isinstance(part, Mapping) and part.get("type") == "text"):
                raise ValueError(
                    f"{where}.content[{j}]: only text parts can be scored, got {part!r:.80}"
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise ValueError(f"{where}.content: expected text or a list of text parts, got {content!r:.80}")


def _role(message: Any, where: str) -> str:
    role = message.get("role") if isinstance(message, Mapping) else None
    if not isinstance(role, str) or not role:
        raise ValueError(f"{where}: expected a chat message with a 'role', got {message!r:.80}")
    return role


class ScoreClient:
    """Scores responses with a `longrm serve` service at `url` (its base, `http://HOST:PORT`).

    One HTTP connection pool per event loop: the client may be used from any loop (TRL runs its
    async rewards on a daemon loop; verl's reward workers on their own), never shared across two.
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(
                f"the longrm service URL must start with http:// or https://, got {url!r}"
            )
        if timeout <= 0 or retries < 0:
            raise ValueError(
                f"timeout must be positive and retries at least 0, got {timeout}, {retries}"
            )
        self.url = url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("LONGRM_API_KEY")
        self.timeout = timeout
        self.retries = retries
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            retry = Retry(
                total=self.retries,
                allowed_methods=["POST"],  # scoring has no side effect: safe to repeat
                status_forcelist=RETRY_STATUSES,
                backoff_factor=0.5,
                max_backoff_wait=30.0,
            )
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            self._http = httpx.AsyncClient(
                transport=RetryTransport(retry=retry), timeout=self.timeout, headers=headers
            )
            self._loop = loop
        return self._http

    async def aclose(self) -> None:
        """Close the connection pool of the running loop's client."""
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = self._loop = None

    async def score(self, prompt: Messages, responses: Sequence[str]) -> list[float | None]:
        """Return one reward per response (None where the model gave none), in order."""
        body = ScoreRequest.model_validate({"messages": prompt, "responses": list(responses)})
        endpoint = f"{self.url}/v1/score"
        try:
            reply = await self._client().post(endpoint, json=body.model_dump(exclude_none=True))
        except httpx.HTTPError as err:
            raise RemoteScoreError(
                f"{endpoint}: no answer after {self.retries} retries "
                f"({type(err).__name__}: {err}); is `longrm serve` running there?"
            ) from err
        if reply.status_code != 200:
            raise RemoteScoreError(
                f"{endpoint} answered {reply.status_code}: {_error_message(reply)}"
            )
        try:
            scores = ScoreResponse.model_validate_json(reply.content).scores
        except ValidationError as err:
            raise RemoteScoreError(f"{endpoint}: not a /v1/score answer: {err}") from None
        if len(scores) != len(responses):
            raise RemoteScoreError(
                f"{endpoint}: {len(scores)} scores for {len(responses)} responses"
            )
        return scores


def _error_message(reply: httpx.Response) -> str:
    """Return the service's error message (its `error.message`), or the start of the body."""
    try:
        error = reply.json()["error"]
        param = f" (field {error['param']})" if error.get("param") else ""
        return f"{error['message']}{param}"
    except (ValueError, KeyError, TypeError):
        return reply.text[:300]
