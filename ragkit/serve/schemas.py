"""Request and response bodies of the chat server, in the shapes of OpenAI's chat API.

Fields OpenAI clients send that ragkit cannot honour are rejected rather than ignored: `n` > 1,
content parts other than text (images, audio, files), and tool calling (`tools`, `tool_choice`,
`functions`, `function_call`, tool messages). Unknown extra fields are ignored, as
OpenAI-compatible servers usually do, so newer clients keep working. ragkit adds `sources` to
the assistant message (and to the last streamed delta) and `time_to_first_token_s` to usage.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

# Error types of refusals written here; the server's error handler shows their message as is.
UNSUPPORTED = ("unsupported_value", "unsupported_parameter")
NO_TOOLS = "tool calls are not supported: this endpoint answers from retrieved passages"


def unsupported(message: str, code: str = "unsupported_value") -> PydanticCustomError:
    return PydanticCustomError(code, message)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Body):
    """A text part of a message (`{"type": "text", "text": ...}`); a message's parts are
    joined in order. Other part types are refused by `ChatMessage`."""

    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    tool_calls: Any = None
    function_call: Any = None

    @field_validator("role")
    @classmethod
    def _no_tool_results(cls, value: str) -> str:
        if value in ("tool", "function"):
            raise unsupported(f"role {value!r}: {NO_TOOLS}", "unsupported_parameter")
        return value

    @field_validator("content", mode="before")
    @classmethod
    def _text_parts_only(cls, value: Any) -> Any:
        """One clear refusal for anything but text, naming the part and its type."""
        if value is None or isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise unsupported(
                f"must be a string or a list of text parts, got {type(value).__name__}"
            )
        for i, part in enumerate(value):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind != "text":
                what = f"type {kind!r}" if kind is not None else "no type"
                raise unsupported(
                    f"part {i} has {what}; this endpoint takes text only (parts of type 'text')"
                )
            if not isinstance(part.get("text"), str):
                raise unsupported(f"part {i}: a text part needs a string 'text'")
        return value

    @field_validator("tool_calls", "function_call")
    @classmethod
    def _no_tool_calls(cls, value: Any) -> Any:
        if value:
            raise unsupported(NO_TOOLS, "unsupported_parameter")
        return None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Body):
    include_usage: bool = True


class ChatCompletionRequest(_Body):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = Field(1, ge=1, le=1)
    user: str | None = None
    tools: Any = None
    functions: Any = None
    tool_choice: Any = None
    function_call: Any = None

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, value: Any) -> None:
        if value:  # an empty list offers nothing to call
            raise unsupported(NO_TOOLS, "unsupported_parameter")
        return None

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, value: Any) -> None:
        if value is not None and value != "none":
            raise unsupported(NO_TOOLS, "unsupported_parameter")
        return None

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings")
        return value

    @property
    def token_limit(self) -> int | None:
        """`max_completion_tokens` (the newer name) wins over `max_tokens`."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens

    @property
    def stop_list(self) -> list[str] | None:
        if self.stop is None:
            return None
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


class Source(BaseModel):
    """A passage the model was given, numbered as the answer's `[n]` citations number it."""

    number: int
    source: str
    chunk_id: str
    text: str
    score: float
    cited: bool


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    time_to_first_token_s: float = 0.0


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    sources: list[Source] = Field(default_factory=list)


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage


class Delta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["assistant"] | None = None
    content: str | None = None
    sources: list[Source] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None

    def sse(self) -> str:
        return f"data: {self.model_dump_json(exclude_none=True)}\n\n"


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "ragkit"
    description: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return ErrorResponse(
        error=ErrorDetail(message=message, type=type, param=param, code=code)
    ).model_dump()
