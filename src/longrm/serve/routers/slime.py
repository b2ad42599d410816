"""slime's remote reward model: `--rm-type remote_rm --rm-url http://HOST:PORT/slime/reward`.

slime posts one sample, `{"prompt", "response", "label"}`, and takes the whole JSON answer as the
reward: a bare number, or (with `--reward-key reward`) an object read at that key, which
`?object=true` answers.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from longrm.serve.deps import Service, require_key
from longrm.serve.errors import ERROR_RESPONSES
from longrm.serve.schemas import SlimeRewardObject, SlimeRewardRequest

router = APIRouter(dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)


@router.post("/slime/reward", response_model=float | None | SlimeRewardObject)
async def slime_reward(
    body: SlimeRewardRequest,
    request: Request,
    service: Service,
    as_object: Annotated[
        bool,
        Query(alias="object", description='answer {"reward": x} (slime\'s --reward-key reward)'),
    ] = False,
) -> float | None | SlimeRewardObject:
    """The reward of one sample: a bare number (null where the model gave none and
    --unscored-reward is unset).

    A text prompt is read back into chat turns (`chat_text`; plain text is one user turn); the
    response loses end-of-turn markup and a leading <think> block.
    """
    if isinstance(body.prompt, str):
        service.count_tokens("/slime/reward", [body.prompt, body.response])
        split = service.split(body.prompt + body.response, body.prompt, "prompt")
        prompt, response = split.prompt, split.response
    else:
        prompt = [m.model_dump() for m in body.prompt]
        service.count_tokens("/slime/reward", [*(m["content"] for m in prompt), body.response])
        response = service.chat_text.response(body.response)
    [value] = await service.score(prompt, [response], request)
    reward = service.rl_reward(value)
    return SlimeRewardObject(reward=reward) if as_object else reward
