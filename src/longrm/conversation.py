"""A task prompt as chat messages or plain text: the input shape that the reward service's
requests (serve/schemas.py) and Best-of-N rollout rows (bon.py) share, so neither imports the
other.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator

from longrm.items import Messages


class ChatMessage(BaseModel):
    """One chat turn; OpenAI's content-part lists are not accepted (text only)."""

    role: str = Field(min_length=1)
    content: str


class PromptInput(BaseModel):
    """A task prompt as chat `messages`, or as a plain `prompt` (one user turn)."""

    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    prompt: str | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> PromptInput:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give exactly one of 'messages' (chat turns) or 'prompt' (text)")
        return self

    def prompt_messages(self) -> Messages:
        """Return the prompt as chat messages."""
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.prompt or ""}]
