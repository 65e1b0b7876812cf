"""Models and chat: the catalog, conversations, and messages answered by `chat` jobs."""

from __future__ import annotations

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from api.auth.context import auth_required, current_auth, current_user_id
from api.chat.schemas import (
    ConversationDetailSchema,
    ConversationPageSchema,
    ConversationSchema,
    MessageArgsSchema,
    ModelListSchema,
    NewConversationSchema,
    NewMessageSchema,
    SearchArgsSchema,
    SearchSchema,
    model_view,
)
from api.dry_run import dry_run_requested, dry_runnable
from api.errors import SHORT_BALANCE, problem
from api.idempotency import PARAMETER_DOC, current_idempotency_key, idempotent
from api.jobs.schemas import JobAcceptedSchema, accepted_view
from api.pagination import PageArgsSchema, decode_time_cursor, page, time_position
from api.ratelimit import rate_limit
from api.services import services
from api.streams.created import streams_when_asked
from assistant.providers import ProviderError
from orchestration.replies import conversations as chat
from orchestration.replies.conversations import ConversationBusy, ConversationNotFound, ModelUnavailable
from orchestration.replies.search import SearchConversations, search_conversations

blp = Blueprint("chat", __name__, url_prefix="/api/v1", description="Models, conversations and messages")


@blp.app_errorhandler(ModelUnavailable)
def _model_unavailable(exc: ModelUnavailable) -> Response:
    return problem(422, str(exc), kind="model-unavailable", available=exc.available)


@blp.route("/models")
class Models(MethodView):
    """The model catalog."""

    @auth_required
    @blp.response(200, ModelListSchema)
    def get(self) -> dict[str, Any]:
        """Every model listed here: capabilities, pricing (credits), price version, availability."""
        return {"items": [model_view(spec) for spec in chat.models(services())]}


@blp.route("/chat/conversations")
class Conversations(MethodView):
    """The caller's conversations."""

    @auth_required
    @blp.arguments(NewConversationSchema)
    @blp.response(201, ConversationSchema)
    @blp.alt_response(422, description="Unknown or unavailable model")
    def post(self, body: dict[str, Any]) -> Any:
        """Start a conversation, optionally with a model."""
        return chat.create_conversation(services(), user_id=current_user_id(), **body)

    @auth_required
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, ConversationPageSchema)
    def get(self, limit: int, cursor: str | None) -> dict[str, Any]:
        """Own conversations, newest first."""
        before = decode_time_cursor(cursor)
        rows = chat.list_conversations(services(), user_id=current_user_id(), limit=limit + 1, before=before)
        return page(rows, limit=limit, position=time_position)


@blp.route("/chat/search")
class Search(MethodView):
    """Semantic search over the caller's own conversations."""

    @auth_required
    @rate_limit("jobs")
    @blp.arguments(SearchArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, SearchSchema)
    @blp.alt_response(402, description="Not enough credits for a priced embedding model", **SHORT_BALANCE)
    @blp.alt_response(422, description="Unknown or unavailable embedding model")
    @blp.alt_response(502, description="The embedding model failed (nothing charged)")
    def get(self, q: str, limit: int, model: str | None) -> Any:
        """The caller's messages most similar to `q`, best first, ranked by an embedding model."""
        command = SearchConversations(user_id=current_user_id(), query=q, limit=limit, model=model)
        try:
            return search_conversations(services(), command)
        except ProviderError as exc:
            abort(502, message=str(exc), kind="embedding-failed")

@blp.route("/chat/conversations/<conversation_id>")
class ConversationById(MethodView):
    """One conversation."""

    @auth_required
    @blp.response(200, ConversationDetailSchema)
    def get(self, conversation_id: str) -> dict[str, Any]:
        """The conversation with its messages in order."""
        try:
            row, history, total = chat.conversation_with_total(
                services(), user_id=current_user_id(), conversation_id=conversation_id
            )
        except ConversationNotFound:
            abort(404, message="No such conversation.")
        messages = [chat.message_view(message) for message in history]
        return {**row._asdict(), "messages": messages, "total_charged": total}


@blp.route("/chat/conversations/<conversation_id>/messages")
class ConversationMessages(MethodView):
    """Send a message; a `chat` job streams the reply and appends it when it settles."""

    @auth_required
    @rate_limit("jobs")
    @dry_runnable
    @streams_when_asked
    @idempotent
    @blp.arguments(MessageArgsSchema, location="query", as_kwargs=True)
    @blp.arguments(NewMessageSchema())  # an instance: from a class, webargs builds one per request
    @blp.response(202, JobAcceptedSchema)
    @blp.alt_response(402, description="Not enough credits for the hold", **SHORT_BALANCE)
    @blp.alt_response(409, description="The previous reply still runs and on_busy=reject")
    @blp.alt_response(422, description="Unknown or unavailable model, or the message doesn't fit")
    @blp.doc(parameters=[PARAMETER_DOC])
    def post(self, body: dict[str, Any], conversation_id: str, on_busy: str) -> dict[str, Any]:
        """Store the message now and start the reply (job kind `chat`, queue `interactive`)."""
        command = chat.PostMessage(
            user_id=current_user_id(),
            conversation_id=conversation_id,
            content=body["content"],
            model=body.get("model"),
            max_tokens=body.get("max_tokens"),
            on_busy=on_busy,
            idempotency_key=current_idempotency_key(),
            api_key_id=current_auth().api_key_id,
            daily_credit_limit=current_auth().daily_credit_limit,
            dry_run=dry_run_requested(),
        )
        try:
            row = chat.post_message(services(), command)
        except ConversationNotFound:
            abort(404, message="No such conversation.")
        except ConversationBusy as exc:
            abort(409, message=str(exc), kind="conversation-busy")
        return accepted_view(row)
