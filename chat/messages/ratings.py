"""How the request for a rating reads: stars to tap, under the order it is about."""

from __future__ import annotations

from chat.cards import user_text
from chat.registry import data
from core.i18n import Translator
from core.outbox import Reply, button, renders
from domain.ratings import RatingRequest


def star_row(order_id: int, chosen: int | None = None) -> list[dict[str, str]]:
    return [button(("⭐" if chosen is not None and n <= chosen else "☆") + str(n), data("rate", order_id, n))
            for n in range(1, 6)]


@renders(RatingRequest)
def rating_request(notice: RatingRequest) -> Reply:
    _ = Translator(notice.language)
    return Reply(
        text=_("⭐ How was <b>{title}</b> from <b>{business}</b>? Tap 1 to 5 stars. It helps others choose, and "
               "the business to do better.", title=user_text(notice.title), business=user_text(notice.business_name)),
        keyboard=[star_row(notice.order_id)], kind="rating_request",
    )
