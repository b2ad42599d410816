"""A `longrm serve` reward model as a reward function of TRL's GRPOTrainer.

```python
from longrm.integrations.trl import RemoteReward
trainer = GRPOTrainer(model=..., reward_funcs=[RemoteReward("http://127.0.0.1:8000")], ...)
```

TRL (1.16, `GRPOTrainer._calculate_rewards`) awaits an async reward function on its own event
loop as `func(prompts=, completions=, completion_ids=, **columns)` and wants one reward per
completion, None for none. GRPO samples several completions of each prompt: they go to the
service as one `/v1/score` request per prompt, so the long prompt is encoded once per group.
TRL is not imported here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from longrm.integrations.client import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ScoreClient,
    as_messages,
    message_text,
)
from longrm.items import Messages


class RemoteReward:
    """An async reward function for `GRPOTrainer(reward_funcs=[...])` backed by a longrm service.

    `url` is the service's base URL; `api_key` its `--api-key` (default: `LONGRM_API_KEY`);
    `timeout` seconds per request; `retries` for 429/5xx answers and refused connections; `name`
    is what TRL logs the reward under (`rewards/<name>/mean`).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        name: str = "longrm",
    ) -> None:
        self.client = ScoreClient(url, api_key=api_key, timeout=timeout, retries=retries)
        self.__name__ = name

    def __repr__(self) -> str:
        return f"RemoteReward({self.client.url!r}, name={self.__name__!r})"

    async def __call__(
        self,
        prompts: list[Any],
        completions: list[Any],
        completion_ids: list[list[int]] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        """Return one reward per (prompt, completion); None where the model gave none."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        groups: dict[str, tuple[Messages, list[int]]] = {}
        texts = [_completion_text(c, f"completions[{i}]") for i, c in enumerate(completions)]
        for i, prompt in enumerate(prompts):
            messages = as_messages(prompt, f"prompts[{i}]")
            key = json.dumps(messages, sort_keys=True)
            groups.setdefault(key, (messages, []))[1].append(i)
        results = await asyncio.gather(
            *(self.client.score(m, [texts[i] for i in rows]) for m, rows in groups.values())
        )
        rewards: list[float | None] = [None] * len(prompts)
        for (_, rows), scores in zip(groups.values(), results, strict=True):
            for i, score in zip(rows, scores, strict=True):
                rewards[i] = score
        return rewards


def _completion_text(completion: Any, where: str) -> str:
    """Return a completion's text: the string, or the text of its messages joined by newlines
    (a tool-using completion holds several turns).
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        return "\n".join(message_text(m, f"{where}[{j}]") for j, m in enumerate(completion))
    raise ValueError(f"{where}: expected text or a list of chat messages, got {completion!r:.80}")
