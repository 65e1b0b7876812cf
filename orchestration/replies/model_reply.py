"""What the two kinds of model reply (a chat turn, an OpenAI-style completion) share as jobs: their
quote, and how a streamed reply reports to the running job."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assistant.pricing import chat_hold
from orchestration.context import RunContext
from orchestration.jobs.kinds import Quote


def reply_quote(params: Mapping[str, Any]) -> Quote:
    """The worst case at the prices frozen into the params: the prompt's token bound + max_tokens."""
    pricing = params["pricing"]
    amount = chat_hold(
        pricing, prompt_tokens=int(params["prompt_tokens"]), max_tokens=int(params["max_tokens"])
    )
    details = {
        "model": params["model"],
        "prompt_tokens": int(params["prompt_tokens"]),
        "max_tokens": int(params["max_tokens"]),
        **{k: int(v) for k, v in pricing.items()},
    }
    return Quote(amount=amount, price_version=str(params["price_version"]), details=details)


@dataclass
class JobSink:
    """The running job as a streamed reply's sink (assistant/reply.ReplySink)."""

    ctx: RunContext

    def token(self, text: str) -> None:
        """Stream a delta (coalesced into token events)."""
        self.ctx.token(text)

    def spend(self, total: int) -> None:
        """The reply's cost so far, replacing the previous figure."""
        self.ctx.book(total)

    def should_stop(self) -> bool:
        """Whether the job must end now."""
        return self.ctx.should_stop()

    def stop_reason(self) -> str | None:
        """Why it must."""
        return self.ctx.stop_reason
