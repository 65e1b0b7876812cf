"""The request body of OpenAI's chat completions, as creditflow honours it (and refuses the rest clearly)."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

ROLES = ("system", "developer", "user", "assistant")
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
    """A message's content: a string, or a list of `{type: "text", text}` parts (joined)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
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
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
            raise ma.ValidationError("Must be a non-empty string or a list of up to 4 of them.")
        return list(stops)


class MessageSchema(ma.Schema):
    """One message of the conversation the client sends whole."""

    role = ma.fields.String(required=True, validate=ma.validate.OneOf(ROLES))
    content = TextContent(required=True)
    name = ma.fields.String(validate=ma.validate.Length(max=64))

    @ma.post_load
    def _turn(self, data: dict[str, Any], **_kwargs: Any) -> dict[str, str]:
        role = "system" if data["role"] == "developer" else data["role"]
        return {"role": role, "content": data["content"]}


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
