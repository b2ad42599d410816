"""The reward service behind every router: the model, its queue, the tokenizers and the limits.

Routers translate HTTP bodies into calls of this object and its answers back into bodies; they
hold no state. Every model call goes through the reward-model interface (score, compare, rank)
on the batcher's worker thread.

A request's life: admitted to the queue (a full queue makes it wait up to `--queue-wait`
seconds for a place, then 429), run by the worker, answered, all within `--request-timeout`
seconds of its arrival (504 after). A client that disconnects meanwhile withdraws its request:
its queue place is free at once, and a running request stops before its next model call.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from longrm.items import Messages
from longrm.rm.base import RewardModel
from longrm.rm.hf_common import HFBackend, PromptTooLongError
from longrm.serve import DEFAULT_QUEUE_WAIT, DEFAULT_REQUEST_TIMEOUT
from longrm.serve.batching import Batcher, QueueFullError, Unit
from longrm.serve.chat_text import ChatText, ChatTextError, Split
from longrm.serve.errors import ApiError
from longrm.serve.generation import generation_backend
from longrm.serve.metrics import ServeMetrics

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
    queue_wait: float = DEFAULT_QUEUE_WAIT
    max_batch: int = 16
    batch_wait: float = 0.005
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_new_tokens: int = 256
    unscored_reward: float | None = None  # the RL endpoints' reward where the model gave none
    policy_template: str | None = None  # the policy's tokenizer (folder or HF id)


def finite(value: float | None) -> float | None:
    """Return the value, or None for NaN and infinities (no score; JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None


def sigmoid(x: float) -> float:
    """Return 1 / (1 + e^-x) without overflow."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def prompt_key(prompt: Messages) -> str:
    """Return the key that groups a batch's model calls by prompt."""
    return hashlib.sha1(json.dumps(prompt, sort_keys=True).encode()).hexdigest()


def load_policy_tokenizer(name: str) -> Any:
    """Return the tokenizer named by --policy-template (a folder or a Hugging Face id)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name)
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"--policy-template {name}: its tokenizer has no chat template")
    return tokenizer


class RewardService:
    """The model, its queue and tokenizers, and the request life above; one per app."""

    def __init__(
        self, model: RewardModel, settings: ServeSettings, policy_tokenizer: Any | None = None
    ) -> None:
        self.model = model
        self.settings = settings
        self.tokenizer = None
        if isinstance(model, HFBackend):
            from transformers import AutoTokenizer

            # The worker thread uses the model's tokenizer; a fast tokenizer used from two
            # threads at once can fail ("Already borrowed"), so requests get a copy of their own.
            self.tokenizer = AutoTokenizer.from_pretrained(model.loaded.path)
        if policy_tokenizer is None and settings.policy_template:
            policy_tokenizer = load_policy_tokenizer(settings.policy_template)
        self.chat_text = ChatText(self.tokenizer, policy_tokenizer)
        if settings.policy_template and self.chat_text.policy is None:
            raise ValueError(
                f"--policy-template {settings.policy_template}: its chat template does not "
                "write each turn as header + content + footer, so its markers cannot be learned"
            )
        self.generator = generation_backend(model)
        self.batcher: Batcher | None = None
        self.waiting = 0  # requests waiting for a queue place
        self.metrics = ServeMetrics(lambda: self.batcher.depth if self.batcher else 0)
        self._freed: asyncio.Event | None = None

    # -- life of the service ---------------------------------------------------------------

    def start(self) -> None:
        """Start the model's worker (inside the server's event loop)."""
        loop = asyncio.get_running_loop()
        freed = self._freed = asyncio.Event()

        def on_free() -> None:
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(freed.set)

        self.batcher = Batcher(
            self.model,
            queue_size=self.settings.queue_size,
            max_batch=self.settings.max_batch,
            batch_wait=self.settings.batch_wait,
            on_batch=self.metrics.batch_size.observe,
            on_free=on_free,
        )

    def close(self) -> None:
        """Stop the worker; queued requests are cancelled."""
        if self.batcher is not None:
            self.batcher.close()

    def health(self) -> dict[str, Any]:
        """Return liveness and load."""
        batcher = self.batcher
        return {
            "status": "ok",
            "model": self.settings.model_name,
            "kind": self.settings.kind,
            "queue_depth": batcher.depth if batcher else 0,
            "queue_size": self.settings.queue_size,
            "waiting": self.waiting,
            "busy": batcher.busy if batcher else False,
        }

    # -- limits ------------------------------------------------------------------------------

    def count_tokens(self, endpoint: str, texts: Sequence[str]) -> int:
        """Return the request's tokens (texts as given, template markup aside); 413 over the
        limit. Without a local tokenizer (openai models) a token counts as 4 bytes.
        """
        if self.tokenizer is not None:
            ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
            n = sum(len(i) for i in ids)
        else:
            n = sum(len(t.encode("utf-8")) for t in texts) // 4
        limit = self.settings.max_request_tokens
        if n > limit:
            raise ApiError(
                413,
                f"the request holds {n} tokens and this server accepts at most {limit} per "
                "request (--max-request-tokens): split it",
            )
        self.metrics.tokens.labels(endpoint, "prompt").inc(n)
        return n

    # -- running model calls -----------------------------------------------------------------

    async def run(self, units: list[Unit], request: Request | None = None) -> list[Any]:
        """Queue the units and return their results (see the module docstring for the limits).

        With `request`, a client that disconnects withdraws them (499, never sent).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout
        gone = asyncio.ensure_future(_disconnected(request)) if request is not None else None
        future: Future[list[Any]] | None = None
        result: asyncio.Future[list[Any]] | None = None
        try:
            future = await self._admit(units, deadline, gone)
            result = asyncio.wrap_future(future)
            waits: set[asyncio.Future[Any]] = {result} if gone is None else {result, gone}
            done, _ = await asyncio.wait(
                waits,
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
            if result in done:
                return self._result(result)
            if gone is not None and gone in done:
                raise ApiError(499, "the client closed the connection")
            raise ApiError(
                504, f"no answer within {self.settings.request_timeout:g} s (--request-timeout)"
            )
        finally:
            if gone is not None:
                gone.cancel()
            if future is not None and not future.done() and self.batcher is not None:
                self.batcher.withdraw(future)
            if result is not None and not result.done():
                result.cancel()  # a withdrawn request's later error is nobody's to read

    async def _admit(
        self, units: list[Unit], deadline: float, gone: asyncio.Future[Any] | None
    ) -> Future[list[Any]]:
        """Return the queued request's future; wait for a place up to --queue-wait."""
        assert self.batcher is not None and self._freed is not None
        loop = asyncio.get_running_loop()
        give_up = min(deadline, loop.time() + self.settings.queue_wait)
        self.waiting += 1
        try:
            while True:
                self._freed.clear()
                try:
                    return self.batcher.submit(units)
                except QueueFullError:
                    pass
                left = give_up - loop.time()
                if left <= 0:
                    break
                freed = asyncio.ensure_future(self._freed.wait())
                waits: set[asyncio.Future[Any]] = {freed} if gone is None else {freed, gone}
                # woken when a place frees; a wake-up another arrival cleared is caught by polling
                await asyncio.wait(
                    waits, timeout=min(left, 0.25), return_when=asyncio.FIRST_COMPLETED
                )
                freed.cancel()
                if gone is not None and gone.done():
                    raise ApiError(499, "the client closed the connection")
        finally:
            self.waiting -= 1
        if give_up >= deadline:
            raise ApiError(
                504, f"no answer within {self.settings.request_timeout:g} s (--request-timeout)"
            )
        raise ApiError(
            429,
            f"the server is busy: all {self.settings.queue_size} queue places stayed taken for "
            f"{self.settings.queue_wait:g} s (--queue-size, --queue-wait)",
        )

    @staticmethod
    def _result(result: asyncio.Future[list[Any]]) -> list[Any]:
        try:
            return result.result()
        except PromptTooLongError as err:
            raise ApiError(413, str(err)) from None
        except (ValueError, ChatTextError) as err:
            raise ApiError(422, str(err)) from None
        except Exception as err:
            status = 502 if type(err).__module__.startswith("openai") else 500
            raise ApiError(status, f"{type(err).__name__}: {err}") from None

    # -- what the routers share ----------------------------------------------------------------

    def score_units(self, prompt: Messages, responses: Sequence[str]) -> list[Unit]:
        """Return one model call per response to one prompt; the batcher scores the calls of a
        prompt together (the prompt encoded once, the responses batched).
        """
        key = prompt_key(prompt)
        return [Unit.for_score(key, prompt, r) for r in responses]

    async def score(
        self, prompt: Messages, responses: Sequence[str], request: Request | None = None
    ) -> list[float | None]:
        """Return one reward per response (None where the model gave none)."""
        return [finite(v) for v in await self.run(self.score_units(prompt, responses), request)]

    def split(self, query: str, prompt: str | None, field: str) -> Split:
        """Return a templated text's prompt turns and response; 422 naming `field` when it
        cannot be split.
        """
        try:
            return self.chat_text.split(query, prompt)
        except ChatTextError as err:
            raise ApiError(422, f"{field}: {err}", field) from None

    async def score_splits(
        self, splits: Sequence[Split], request: Request | None = None
    ) -> list[float | None]:
        """Return the reward of each split query, in order."""
        units = [Unit.for_score(prompt_key(s.prompt), s.prompt, s.response) for s in splits]
        return [finite(v) for v in await self.run(units, request)]

    def rl_reward(self, value: float | None) -> float | None:
        """Return the reward an RL trainer gets: --unscored-reward where the model gave none."""
        return self.settings.unscored_reward if value is None else value


async def _disconnected(request: Request) -> None:
    """Return once the client has closed the connection (the body has been read by then)."""
    while True:
        try:
            message = await request.receive()
        except Exception:  # no way to listen: the request runs to its end
            await asyncio.Event().wait()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.05)  # more (empty) body: nothing to do but listen again
