"""The request body of OpenAI's chat completions, as creditflow honours it (and refuses the rest clearly)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

ROLES = ("system", "developer", "user", "assistant")
# OpenAI's own words for it (a 400, param `stream_options`).
STREAM_OPTIONS_WITHOUT_STREAM = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
# Parameters a client may send at their default value (SDKs and front-ends often do): anything else
# would change the answer in a way we don't support, so it is refused, never silently ignored.
DEFAULTS_ONLY: dict[str, tuple[Any, ...]] = {
    "n": (1, None),
    "presence_penalty": (0, 0.0, None),
    "frequency_penalty": (0, 0.0, None),
    "logprobs": (False, None),
    "top_logprobs": (0, None),
    "logit_bias": (None, {}),
    "seed": (None,),
    "tools": (None, []),
    "tool_choice": (None, "none", "auto"),
    "parallel_tool_calls": (None, True, False),
    "functions": (None, []),
    "function_call": (None, "none", "auto"),
    "response_format": (None, {"type": "text"}),
    "modalities": (None, ["text"]),
    "store": (None, False),
    "metadata": (None, {}),
    "service_tier": (None, "auto", "default"),
}


class TextContent(ma.fields.Field):  # type: ignore[type-arg]
    """A message's content: a string, or a list of `{type: "text", text}` parts (joined); null is left
    to the message to judge (an assistant's tool calls)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(part, dict) for part in value):
            if any(part.get("type") != "text" or not isinstance(part.get("text"), str) for part in value):
                raise ma.ValidationError("Only text content parts are supported here (no images or audio).")
            return "".join(part["text"] for part in value)
        raise ma.ValidationError("Must be a string or a list of text parts.")


class StopField(ma.fields.Field):  # type: ignore[type-arg]
    """`stop`: a string or up to 4 strings."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str] | None:
        if value is None or value == []:
            return None  # `stop: []` asks for no stop sequence, as OpenAI reads it
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
            raise ma.ValidationError("Must be a non-empty string or a list of up to 4 of them.")
        return list(stops)


class MessageSchema(ma.Schema):
    """One message of the conversation the client sends whole."""

    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ROLES))
    content = TextContent(required=True, allow_none=True)
    name = ma.fields.String(validate=ma.validate.Length(max=64))
    # An assistant turn that called tools (its content is null then, as OpenAI allows): the calls stay
    # in the transcript as text, so the model still sees what was asked.
    tool_calls = ma.fields.List(ma.fields.Dict(), allow_none=True)
    refusal = ma.fields.String(allow_none=True)

    @ma.validates_schema
    def _content_or_calls(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("content") is None and not (data["role"] == "assistant" and data.get("tool_calls")):
            raise ma.ValidationError("Required, unless an assistant message has tool_calls.", "content")
        if data.get("tool_calls") and data["role"] != "assistant":
            raise ma.ValidationError("Only assistant messages have tool_calls.", "tool_calls")

    @ma.post_load
    def _turn(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, str]:
        role = "system" if data["role"] == "developer" else data["role"]
        calls = [_call_text(call) for call in data.get("tool_calls") or ()]
        return {"role": role, "content": "\n".join([data.get("content") or "", *calls]).strip()}


def _call_text(call: dict[str, Any]) -> str:
    function = call.get("function")
    if not isinstance(function, dict):
        function = {}
    return f"[tool call {function.get('name', '?')}({function.get('arguments', '')})]"


class StreamOptionsSchema(ma.Schema):
    """`stream_options`."""

    include_usage = ma.fields.Boolean(load_default=False)


class CompletionRequestSchema(ma.Schema):
    """`POST /openai/v1/chat/completions`."""

    class Meta:
        unknown = ma.EXCLUDE  # the refused and default-only parameters were checked before

    model = ma.fields.String(required=True, validate=ma.validate.Length(1, 200))
    messages = ma.fields.List(
        ma.fields.Nested(MessageSchema), required=True, validate=ma.validate.Length(1, 4096)
    )
    max_tokens = ma.fields.Integer(strict=True, allow_none=True, validate=ma.validate.Range(1, 1_000_000))
    max_completion_tokens = ma.fields.Integer(
        strict=True, allow_none=True, validate=ma.validate.Range(1, 1_000_000)
    )
    temperature = ma.fields.Float(allow_none=True, validate=ma.validate.Range(0, 2))
    top_p = ma.fields.Float(allow_none=True, validate=ma.validate.Range(0, 1))
    stop = StopField(allow_none=True)
    stream = ma.fields.Boolean(load_default=False)
    stream_options = ma.fields.Nested(StreamOptionsSchema, allow_none=True)
    user = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=256))

    @ma.validates_schema
    def _stream_options_need_stream(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if data.get("stream_options") is not None and not data.get("stream"):
            raise ma.ValidationError(STREAM_OPTIONS_WITHOUT_STREAM, "stream_options")

    @ma.validates_schema
    def _one_max(self, data: dict[str, Any], **_kwargs: Any) -> None:
        given = {data.get("max_tokens"), data.get("max_completion_tokens")} - {None}
        if len(given) > 1:
            raise ma.ValidationError("max_tokens and max_completion_tokens disagree.", "max_tokens")

    @ma.post_load
    def _merge(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, Any]:
        data["max_tokens"] = data.pop("max_completion_tokens", None) or data.get("max_tokens")
        return data


KNOWN = set(CompletionRequestSchema().fields) | set(DEFAULTS_ONLY)


def unsupported_parameter(body: dict[str, Any]) -> tuple[str, str] | None:
    """(parameter, message) for the first parameter this API can't honour as sent; None if all can be."""
    for name, value in body.items():
        if name not in KNOWN:
            return name, f"Unrecognized request argument supplied: {name}"
        if name in DEFAULTS_ONLY and value not in DEFAULTS_ONLY[name]:
            return name, f"`{name}` is not supported here (only its default); leave it out."
    return None
