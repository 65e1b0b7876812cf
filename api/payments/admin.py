"""`/api/v1/admin/payments`: every order, filtered, and the refund action (admins only)."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from api.admin.routes import actor
from api.auth.context import admin_read_required, admin_required, current_user_id
from api.idempotency import current_idempotency_key, idempotent
from api.pagination import PageArgsSchema
from api.payments.pages import order_page
from api.payments.schemas import AdminOrderListArgsSchema, OrderPageSchema, OrderSchema, RefundSchema
from api.services import services
from orchestration.payments.orders import get_order, order_view
from orchestration.payments.refunds import refund_order, release_freezes
from orchestration.reports import audit

blp = Blueprint(
    "payment-admin", __name__, url_prefix="/api/v1/admin/payments", description="Payments (admin)"
)


@blp.route("")
class AllOrders(MethodView):
    """Every order."""

    @admin_read_required
    @blp.arguments(PageArgsSchema, location="query", as_kwargs=True)
    @blp.arguments(AdminOrderListArgsSchema, location="query", as_kwargs=True)
    @blp.response(200, OrderPageSchema)
    def get(self, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
        """Orders newest first; filter by `user_id`, `rail`, `status`."""
        return order_page(limit=limit, cursor=cursor, **filters)


@blp.route("/<order_id>/refund")
class Refund(MethodView):
    """Refund an order on its rail."""

    @admin_required
    @idempotent
    @blp.arguments(RefundSchema)
    @blp.response(200, OrderSchema)
    def post(self, body: dict[str, Any], order_id: str) -> dict[str, Any]:
        """Refund all or `amount` (minor units) of a credited order; the credits are taken back once."""
        amount = int(body["amount"]) if body["amount"] else None
        with audit.audited(services(), actor=actor(), action="payment.refund", target=f"order:{order_id}",
                           before=_audited_order(order_id), reason=body["reason"]) as note:
            refunded = order_view(refund_order(
                services(),
                order_id=order_id,
                amount=amount,
                admin_id=current_user_id(),
                request_key=current_idempotency_key(),
                reason=body["reason"],
            ))
            note.after = {**_order_facts(refunded), "amount_asked": amount}
        return refunded


@blp.route("/<order_id>/release")
class Release(MethodView):
    """Release what an early fraud warning froze."""

    @admin_required
    @blp.response(200, OrderSchema)
    def post(self, order_id: str) -> dict[str, Any]:
        """After review: the order's credits frozen by an early fraud warning become spendable again."""
        with audit.audited(
            services(), actor=actor(), action="payment.release", target=f"order:{order_id}",
            before=_audited_order(order_id),
        ) as note:
            released = order_view(release_freezes(services(), order_id=order_id, admin_id=current_user_id()))
            note.after = _order_facts(released)
        return released


AUDITED_FIELDS = (
    "id", "user_id", "rail", "status", "credits", "credited", "amount", "currency", "amount_refunded",
    "failure",
)


def _order_facts(view: dict[str, Any]) -> dict[str, Any]:
    return {name: view.get(name) for name in AUDITED_FIELDS}


def _audited_order(order_id: str) -> dict[str, Any] | None:
    """The order's state before an admin acts on it (None when there is no such order)."""
    with services().uow(autocommit=True) as db:
        row = get_order(db, order_id)
    return _order_facts(order_view(row)) if row is not None else None
