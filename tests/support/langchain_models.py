"""LangChain's own fake chat models, made reusable by a catalog entry (import path + kwargs).

`GenericFakeChatModel` answers from an iterator that one call uses up, and reports no usage when it
streams; a catalog entry builds one instance per worker process and uses it for every turn, so these
subclasses answer the same reply every time and, when asked, put `usage_metadata` on chunks as real
integrations do (Anthropic: the input tokens on the first chunk, the output tokens on the last).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.tools import tool


class UpstreamError(Exception):
    """An integration's HTTP error: carries the upstream's status code, as openai's and anthropic's do."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class RateLimitError(Exception):
    """Named like the integrations' rate-limit errors, without a status code."""


class ScriptedChatModel(GenericFakeChatModel):
    """Streams `reply` word by word (GenericFakeChatModel's split), every call.

    `usage`: put usage_metadata on the chunks (input = words of the prompt, output = chunks sent).
    `delay_s`: sleep before each chunk. `fail_with`: "429", "400", "timeout", "ratelimit" raise that error
    after `fail_after` chunks. `seen`: the prompts received (for multimodal checks, in one process)."""

    messages: Iterator[AIMessage | str] = iter(())
    reply: str = "Scripted reply from a LangChain model."
    usage: bool = True
    delay_s: float = 0.0
    fail_with: str | None = None
    fail_after: int = 0
    fail_calls: int = 0  # with fail_with: only the first this many calls fail (0: every call)
    calls: int = 0
    seen: list[list[Any]] = []

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Any:
        self.messages = iter([AIMessage(content=self.reply)])
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        self.seen.append([message.content for message in messages])
        self.calls += 1
        failing = self.fail_with if not self.fail_calls or self.calls <= self.fail_calls else None
        prompt_words = sum(len(str(message.content).split()) for message in messages)
        sent = 0
        for chunk in super()._stream(messages, stop=stop, run_manager=run_manager, **kwargs):
            if failing and sent >= self.fail_after:
                raise _error(failing)
            time.sleep(self.delay_s)
            sent += 1
            if self.usage and sent == 1:
                chunk.message = AIMessageChunk(
                    content=chunk.message.content,
                    usage_metadata={
                        "input_tokens": prompt_words,
                        "output_tokens": 0,
                        "total_tokens": prompt_words,
                    },
                )
            yield chunk
        if failing:
            raise _error(failing)
        if self.usage:
            final = {"input_tokens": 0, "output_tokens": sent, "total_tokens": sent}
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="", usage_metadata=final, response_metadata={"finish_reason": "stop"}
                )
            )


def _error(kind: str) -> Exception:
    if kind == "timeout":
        return TimeoutError("upstream timed out")
    if kind == "ratelimit":
        return RateLimitError("slow down")
    return UpstreamError(f"upstream answered {kind}", status_code=int(kind))


class BrokenEmbeddings(Embeddings):
    """A LangChain embeddings model whose upstream answers 503 (a search must charge nothing)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        raise UpstreamError("upstream answered 503", status_code=503)

    def embed_query(self, text: str) -> list[float]:
        raise UpstreamError("upstream answered 503", status_code=503)


@tool(response_format="content")
def glossary(term: str) -> str:
    """Define a term (an ecosystem tool: no creditflow code, one text argument)."""
    return f"{term}: a word worth defining"


glossary.metadata = {"cost": 7}  # micro-credits a call


@tool
def two_arguments(city: str, day: str) -> str:
    """A tool a single query does not fit."""
    return f"{city} {day}"
