"""Request and response bodies of every endpoint (pydantic), kept apart from the routes.

Unknown fields are ignored unless a schema says otherwise, so that clients written for other
servers (OpenRLHF, slime, verl, OpenAI) can send what they always send. A prompt is chat
`messages` or a plain `prompt` (`longrm.conversation.PromptInput`, shared with Best-of-N).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from longrm.conversation import ChatMessage, PromptInput


class ScoreRequest(PromptInput):
    """POST /v1/score: one pointwise reward per response."""

    responses: list[str] = Field(min_length=1)


class ScoreResponse(BaseModel):
    """Scores in request order; null where the model gave none (an unparsed judge reply)."""

    model: str
    scores: list[float | None]


class CompareRequest(PromptInput):
    """POST /v1/compare: which of two responses is better."""

    responses: list[str] = Field(min_length=2, max_length=2)


class CompareResponse(BaseModel):
    """`preferred` is 0 or 1 (null: no verdict); `probability` is P(responses[0] is better)."""

    model: str
    preferred: int | None
    probability: float | None
    scores: list[float | None] | None
    text: str
    truncated: bool
    error: str | None = None


class RankRequest(PromptInput):
    """POST /v1/rank: order N responses best first."""

    responses: list[str] = Field(min_length=1)


class RankResponse(BaseModel):
    """`ranking` lists response indices best first (null: the verdict could not be parsed)."""

    model: str
    ranking: list[int] | None
    best: int | None
    scores: list[float | None] | None
    text: str
    truncated: bool
    error: str | None = None


class RewardRequest(BaseModel):
    """POST /get_reward, OpenRLHF's remote reward-model contract (0.11).

    `query` holds prompt + response texts as the policy saw them (chat template applied);
    `prompts`, when given, the prompt text of each; `labels` are accepted and ignored.
    """

    query: list[str] = Field(min_length=1)
    prompts: list[str] | None = None
    labels: list[Any] | None = None

    @model_validator(mode="after")
    def _same_lengths(self) -> RewardRequest:
        if self.prompts is not None and len(self.prompts) != len(self.query):
            raise ValueError(
                f"'prompts' has {len(self.prompts)} entries and 'query' {len(self.query)}: "
                "give one prompt per query"
            )
        return self


class SplitInfo(BaseModel):
    """How a query was read back into prompt turns and a response."""

    template: str = Field(
        description="the chat template whose markers read it: policy (--policy-template), "
        "reward_model (the served model's own), a family of the table (chatml, llama3, gemma, "
        "mistral, phi3, phi4, deepseek), or plain (no markup: one user turn)"
    )
    at: Literal["prompt", "reply_marker"] = Field(
        description="cut at the given prompt text, or after the template's last reply marker"
    )
    turns: int = Field(description="prompt turns read")
    reasoning_removed: bool = Field(description="a leading <think> block was left out")


class RewardResponse(BaseModel):
    """One reward per query; OpenRLHF reads `rewards`, `scores` and `extra_logs` (whose values
    must be numbers: it turns each into a tensor), and ignores `splits`.
    """

    rewards: list[float | None]
    scores: list[float | None]
    extra_logs: dict[str, list[float]] = Field(
        description="per query: scored (1: the model gave a reward, 0: --unscored-reward or "
        "null), split_family (the template's code: 0 plain, 1 policy, 2 reward model, 3 chatml, "
        "4 llama3, 5 gemma, 6 mistral, 7 phi3, 8 phi4, 9 deepseek), split_at_prompt (1: cut at "
        "the given prompt), reasoning_removed (1: a <think> block was left out)"
    )
    splits: list[SplitInfo]


class SlimeRewardRequest(BaseModel):
    """POST /slime/reward, slime's `remote_rm` body (one sample).

    `prompt` is the sample's prompt: text (rendered with the policy's chat template when slime
    runs with --apply-chat-template) or chat messages; `response` the generated text; `label`
    is accepted and ignored.
    """

    prompt: str | list[ChatMessage]
    response: str
    label: Any = None

    @model_validator(mode="after")
    def _some_prompt(self) -> SlimeRewardRequest:
        if isinstance(self.prompt, list) and not self.prompt:
            raise ValueError("'prompt' is an empty list: give text or at least one message")
        return self


class SlimeRewardObject(BaseModel):
    """/slime/reward?object=true: the reward under a key (slime's `--reward-key reward`)."""

    reward: float | None


class ClassifyRequest(BaseModel):
    """POST /classify, vLLM's classification shape: `input` is the full templated text.

    `activation` (vLLM < 0.11.2) or `use_activation` false returns the raw reward as the
    single "probability"; true (the default) returns its sigmoid. Other fields are ignored.
    """

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    input: str | Annotated[list[str], Field(min_length=1)]
    activation: bool | None = None
    use_activation: bool | None = None

    def texts(self) -> list[str]:
        """Return the inputs as a list."""
        return [self.input] if isinstance(self.input, str) else list(self.input)

    def apply_activation(self) -> bool:
        """Return whether to squash rewards into (0, 1) (vLLM's default is to)."""
        for value in (self.use_activation, self.activation):
            if value is not None:
                return value
        return True


class ClassifyData(BaseModel):
    """One input's result, as vLLM sends it."""

    index: int
    label: str
    probs: list[float | None]
    num_classes: int


class Usage(BaseModel):
    """Token counts, as OpenAI-compatible servers report them."""

    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class ClassifyResponse(BaseModel):
    """vLLM's classification response."""

    id: str
    object: Literal["list"] = "list"
    created: int
    model: str
    data: list[ClassifyData]
    usage: Usage


class ChatCompletionRequest(BaseModel):
    """POST /v1/chat/completions: the OpenAI fields a local judge honours.

    Honoured: messages, max_tokens / max_completion_tokens, temperature, top_p, seed, logprobs,
    top_logprobs, n (1 only), stream (false only), and vLLM's extras continue_final_message,
    add_generation_prompt, ignore_eos and min_tokens. Other fields are accepted and ignored.
    """

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    n: int = Field(default=1, ge=1, le=1)
    stream: Literal[False] = False
    continue_final_message: bool = False
    add_generation_prompt: bool = True
    ignore_eos: bool = False
    min_tokens: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _prefill_needs_assistant(self) -> ChatCompletionRequest:
        if self.continue_final_message and self.messages[-1].role != "assistant":
            raise ValueError("continue_final_message needs an assistant message last")
        return self


class TopLogprob(BaseModel):
    """One alternative token."""

    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(BaseModel):
    """A generated token with its alternatives."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    """Logprobs of a choice's content tokens."""

    content: list[TokenLogprob]


class AssistantMessage(BaseModel):
    """The generated reply."""

    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    """The one choice a local judge returns."""

    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    """OpenAI's chat completion object."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class HealthResponse(BaseModel):
    """GET /health: liveness and load."""

    status: Literal["ok"]
    model: str
    kind: str
    queue_depth: int = Field(description="requests queued for the model")
    queue_size: int = Field(description="--queue-size: queued requests at most")
    waiting: int = Field(description="requests waiting for a queue place (--queue-wait)")
    busy: bool = Field(description="the model is running a batch")


class ErrorBody(BaseModel):
    """Every error, in OpenAI's shape: `param` names the offending field when there is one."""

    message: str
    type: str
    param: str | None = None
    code: int


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorBody
