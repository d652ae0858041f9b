"""Orders and payments: reservations refused, the Pay button, paid, refunds, cancellations."""

from __future__ import annotations

from datetime import UTC, datetime

from chat.cards import format_window, local_time, user_text
from chat.menus import home_row
from chat.registry import data
from core.i18n import Translator
from core.outbox import Keyboard, Reply, button, renders
from core.settings import get_settings
from domain.money import format_money
from domain.ordering import MAX_PER_ORDER, ReservationRefused
from domain.payments import notices
from domain.payments.cancellation import CancellationOutcome
from domain.payments.closing import NotCollected, Standing
from domain.payments.notices import CallOffReason, OrderNotice
from domain.reservations import RefundReason, ReserveOutcome

# --------------------------------------------------------------------------- reserving


def refusal(_: Translator, outcome: ReserveOutcome, offer_id: int, title: str, units_left: int | None) -> Reply:
    """Why a reservation was refused, in the customer's language (``title`` as the business typed it)."""
    title = user_text(title)
    more = [[button(_("🔎 More deals"), data("deals")), button(_("⬅️ Main menu"), data("menu"))]]
    if outcome is ReserveOutcome.SOLD_OUT:
        text = _("😔 Sorry, <b>{title}</b> just sold out.", title=title)
    elif outcome is ReserveOutcome.NOT_ENOUGH_LEFT:
        left = units_left or 0
        text = _.ngettext("Only {count} is left of <b>{title}</b>. Please choose a smaller quantity.",
                          "Only {count} are left of <b>{title}</b>. Please choose a smaller quantity.", left,
                          title=title)
        more.insert(0, [button(_("Choose again"), data("offer", offer_id))])
    elif outcome is ReserveOutcome.OVER_LIMIT:
        text = _("You can reserve at most {count} at once.", count=MAX_PER_ORDER)
    elif outcome is ReserveOutcome.NO_SHOW_LIMIT:
        text = _("Because several of your recent orders were not collected, you can have only one open order "
                 "at a time for now. Collect or cancel it, then order again.")
        more.insert(0, [button(_("🧾 My orders"), data("orders"))])
    else:
        text = _("This offer can't be ordered any more.")
    return Reply(text=text, keyboard=more)


@renders(ReservationRefused)
def _refused(notice: ReservationRefused) -> Reply:
    reply = refusal(Translator(notice.language), notice.outcome, notice.offer_id, notice.title, notice.units_left)
    reply.edit_message_id = notice.message_id  # in place of "⏳ Reserving…"
    return reply


# --------------------------------------------------------------------------- how an order reads


def _what(notice: OrderNotice) -> str:
    return f"<b>{notice.order.quantity} × {user_text(notice.offer.title)}</b> — {_amount(notice)}"


def _amount(notice: OrderNotice) -> str:
    return format_money(notice.order.amount_minor, notice.order.currency, notice.language)


def _where_and_when(_: Translator, notice: OrderNotice) -> str:
    offer, business = notice.offer, notice.business
    window = format_window(_, offer.pickup_start, offer.pickup_end, business.timezone, datetime.now(UTC))
    return f"🏪 {user_text(business.name)}, {user_text(business.address)}\n" + _("🕒 Pickup {window}", window=window)


def _orders_row(_: Translator) -> list[dict[str, str]]:
    return [button(_("🧾 My orders"), data("orders")), *home_row(_)]


def _to_customer(_: Translator, text: str, kind: str) -> Reply:
    return Reply(text=text, keyboard=[_orders_row(_)], kind=kind)


# --------------------------------------------------------------------------- paying


@renders(notices.PayNow)
def _pay_now(notice: notices.PayNow) -> Reply:
    _ = Translator(notice.language)
    order = notice.order
    # Sent only for a held order whose hold has an end and whose session is open (create_checkout).
    assert order.hold_expires_at is not None, "a PayNow order's hold has an end"
    assert order.checkout_url is not None, "a PayNow order has its Checkout Session's URL"
    deadline = local_time(order.hold_expires_at, notice.business.timezone)
    text = "\n".join([
        _("🛒 Reserved for you: {what}", what=_what(notice)),
        _where_and_when(_, notice),
        "",
        _("Please pay by <b>{time}</b>; after that the reservation lapses and the food goes back on sale.",
          time=f"{deadline:%H:%M}"),
    ])
    keyboard: Keyboard = [
        [{"text": _("💳 Pay {amount}", amount=_amount(notice)), "url": order.checkout_url}],
        [button(_("✖️ Cancel reservation"), data("ocancel", order.id))],
        _orders_row(_),
    ]
    return Reply(text=text, keyboard=keyboard, edit_message_id=notice.message_id, kind="checkout")


@renders(notices.PayButtonSpent)
def _pay_button_spent(notice: notices.PayButtonSpent) -> Reply:
    """The Pay message once nothing can be paid or cancelled there: what it was for, what became
    of it, and only the buttons that still lead somewhere."""
    _ = Translator(notice.language)
    if notice.why is notices.PayButtonGone.PAID:
        status = _("✅ Paid.")
        if notice.order.pickup_code:
            status += " " + _("Pickup code: <b>{code}</b>", code=notice.order.pickup_code)
    elif notice.why is notices.PayButtonGone.LAPSED:
        status = _("⌛ Not paid in time: the reservation lapsed. Nothing was charged.")
    elif notice.why is notices.PayButtonGone.CANCELLED:
        status = _("✖️ Reservation cancelled. Nothing was charged.")
    else:
        status = _("This reservation is closed: see the message below.")
    text = "\n".join([_("🛒 Your reservation: {what}", what=_what(notice)), _where_and_when(_, notice), "", status])
    return Reply(text=text, keyboard=[_orders_row(_)], edit_message_id=notice.message_id, kind="checkout_spent")


@renders(notices.CardPaymentUnavailable)
def _card_payment_unavailable(notice: notices.CardPaymentUnavailable) -> Reply:
    _ = Translator(notice.language)
    return _to_customer(_, _("😕 Sorry, card payment is not available right now, so your reservation of {what} was "
                             "released. Nothing was charged. Please try again later.", what=_what(notice)),
                        "checkout_failed")


@renders(notices.OrderPaid)
def _paid(notice: notices.OrderPaid) -> Reply:
    _ = Translator(notice.language)
    lines = [_("✅ <b>Paid — thank you!</b>"), _what(notice), _where_and_when(_, notice), "",
             _("Your pickup code: <b>{code}</b>\nShow it at the counter.", code=notice.pickup_code)]
    if notice.late:
        lines.insert(1, _("(Your reservation had lapsed, but there was still enough left.)"))
    return _to_customer(_, "\n".join(lines), "paid")


@renders(notices.NewPaidOrder)
def _new_order(notice: notices.NewPaidOrder) -> Reply:
    _ = Translator(notice.language)
    return Reply(
        text=_("🧾 New order: {count} × <b>{title}</b> ({amount}), paid. {left} left.",
               count=notice.order.quantity, title=user_text(notice.offer.title), amount=_amount(notice),
               left=notice.units_left),
        keyboard=[home_row(_)], kind="new_order",
    )


@renders(notices.PaymentProcessing)
def _processing(notice: notices.PaymentProcessing) -> Reply:
    _ = Translator(notice.language)
    return _to_customer(_, _("⏳ Your bank payment for {what} is being processed. We send your pickup code as soon "
                             "as it clears.", what=_what(notice)), "processing")


@renders(notices.PaymentFailed)
def _payment_failed(notice: notices.PaymentFailed) -> Reply:
    _ = Translator(notice.language)
    return _to_customer(_, _("❌ Your bank payment for {what} did not go through, so the reservation was released. "
                             "Nothing was charged.", what=_what(notice)), "payment_failed")


# --------------------------------------------------------------------------- refunds


@renders(notices.PaymentToRefund)
def _refunding(notice: notices.PaymentToRefund) -> Reply:
    _ = Translator(notice.language)
    what = _what(notice)
    if notice.reason is RefundReason.NO_STOCK_LEFT:
        why = _("Your payment for {what} arrived after your reservation had lapsed, and it is sold out now.",
                what=what)
    elif notice.reason is RefundReason.OFFER_UNAVAILABLE:
        why = _("Your payment for {what} arrived, but the offer is no longer available.", what=what)
    else:
        why = _("Your payment for {what} did not match the order.", what=what)
    amount = format_money(notice.amount_minor, notice.currency, notice.language)
    return _to_customer(_, "😔 " + why + "\n" + _("We are refunding {amount} to you; nothing is lost.", amount=amount),
                        "refunding")


@renders(notices.Refunded)
def _refunded(notice: notices.Refunded) -> Reply:
    _ = Translator(notice.language)
    return _to_customer(_, _("↩️ Refunded {amount} for {what}. It can take a few days to show on your statement.",
                             amount=format_money(notice.amount_minor, notice.currency, notice.language),
                             what=_what(notice)),
                        "refunded")


# --------------------------------------------------------------------------- cancellations


def describe_cancellation(_: Translator, outcome: CancellationOutcome) -> str:
    """What the customer reads after trying to cancel (short: it is shown as a button answer)."""
    if outcome is CancellationOutcome.CANCELLED:
        return _("Order cancelled. Your money is on its way back to your card.")
    if outcome is CancellationOutcome.TOO_LATE:
        minutes = get_settings().cancellation_cutoff_minutes
        return _.ngettext("Sorry, a paid order can be cancelled only until {minutes} minute before pickup starts.",
                          "Sorry, a paid order can be cancelled only until {minutes} minutes before pickup starts.",
                          minutes, minutes=minutes)
    return _("This order can't be cancelled any more.")


@renders(notices.CancelledByCustomer)
def _cancelled_by_customer(notice: notices.CancelledByCustomer) -> Reply:
    _ = Translator(notice.language)
    return Reply(
        text=_("✖️ An order was cancelled by the customer: {count} × <b>{title}</b>. The items are back on sale.",
               count=notice.order.quantity, title=user_text(notice.offer.title)),
        keyboard=[home_row(_)], kind="order_cancelled",
    )


@renders(notices.OrderCalledOff)
def _called_off(notice: notices.OrderCalledOff) -> Reply:
    _ = Translator(notice.language)
    if notice.reason is CallOffReason.OFFER_CANCELLED:
        return Reply(
            text=_("😔 <b>{business}</b> had to cancel <b>{title}</b>. Your payment of {amount} will be refunded "
                   "to your card automatically.", business=user_text(notice.business.name),
                   title=user_text(notice.offer.title), amount=_amount(notice)),
            keyboard=[[button(_("🔎 More deals"), data("deals"))]], kind="called_off",
        )
    why = (_("The business cancelled this offer.") if notice.reason is CallOffReason.BY_BUSINESS
           else _("This business is no longer on Surplus."))
    return _to_customer(_, "😔 " + _("Your order {what} was cancelled.", what=_what(notice)) + " " + why + "\n"
                        + _("You get {amount} back on your card.", amount=_amount(notice)), "called_off")


@renders(notices.ReservationCalledOff)
def _reservation_called_off(notice: notices.ReservationCalledOff) -> Reply:
    _ = Translator(notice.language)
    return Reply(
        text=_("😔 <b>{business}</b> had to cancel <b>{title}</b>. Your reservation was released; you were not "
               "charged.", business=user_text(notice.business.name), title=user_text(notice.offer.title)),
        keyboard=[[button(_("🔎 More deals"), data("deals"))]], kind="called_off",
    )


# --------------------------------------------------------------------------- orders that close


@renders(NotCollected)
def _not_collected(notice: NotCollected) -> Reply:
    _ = Translator(notice.language)
    lines = [_("🕒 We missed you! Nobody picked up {what} at <b>{business}</b>, and the pickup time is over, "
               "so the order is closed.", what=_what(notice), business=user_text(notice.business.name))]
    if notice.refunded:
        lines.append(_("You get {amount} back on your card.", amount=_amount(notice)))
    else:
        lines.append(_("The food was kept aside for you, so the order is not refunded. If you came after all, "
                       "the business can still confirm your pickup."))
    if notice.standing is Standing.WARNED:
        lines.append(_.ngettext(
            "⚠️ That is {count} order not collected in 30 days. One more, and you can have only one open order "
            "at a time for a while.",
            "⚠️ That is {count} orders not collected in 30 days. One more, and you can have only one open order "
            "at a time for a while.", notice.no_shows, count=notice.no_shows))
    elif notice.standing is Standing.LIMITED:
        lines.append(_.ngettext(
            "⚠️ That is {count} order not collected in 30 days, so for now you can have only one open order "
            "at a time.",
            "⚠️ That is {count} orders not collected in 30 days, so for now you can have only one open order "
            "at a time.", notice.no_shows, count=notice.no_shows))
    lines.append(_("If plans change, you can cancel an order in /orders before pickup."))
    return _to_customer(_, "\n".join(lines), "not_collected")
