"""A page of payment orders as the API shows them: the user's own list and the admins' list alike."""

from __future__ import annotations

from typing import Any

from api.pagination import decode_time_cursor, page, time_position
from api.services import services
from orchestration.payments.orders import list_orders, order_view


def order_page(*, limit: int, cursor: str | None, **filters: Any) -> dict[str, Any]:
    """Orders matching `filters`, newest first, from `cursor` on: {items, next_cursor}."""
    rows = list_orders(services(), limit=limit + 1, before=decode_time_cursor(cursor), **filters)
    answer = page(rows, limit=limit, position=time_position)
    answer["items"] = [order_view(row) for row in answer["items"]]
    return answer
