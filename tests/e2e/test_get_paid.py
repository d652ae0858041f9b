"""A business gets paid, end to end through the chat, the gateway and the Stripe fake: it sets up
payouts on Stripe's onboarding page (the demo's own step, as the web chat plays it) and hears that
they are active, a customer buys, the money
goes to its connected account minus the fee, and it sees the sale in 💶 Earnings with a chart."""

from __future__ import annotations

from core import db
from models import Business
from sandbox.demo import Chatter, set_up_payouts
from tests.e2e.conftest import new_user_id
from tests.e2e.test_payments import plain, reserve_through_the_chat, say, wait_for_message, wait_until
from tests.factories import make_business, make_offer


def test_payouts_set_up_in_the_chat_then_a_sale_shows_in_earnings(stack, user):
    owner = new_user_id()
    stack.telegram.create_user(owner, "Greta")
    business_id = make_business(owner, name="Bäckerei Mond")
    offer_id = make_offer(business_id, "Rye loaf", quantity=3, price_minor=500, original_price_minor=900)

    # As the web chat's demo plays it: 💶 Set up payouts, then "Complete" on Stripe's onboarding page.
    steps: list[str] = []
    set_up_payouts(Chatter(stack.telegram, owner, timeout=20), steps.append)
    assert steps[-1] == "Stripe says payouts are active"
    wait_for_message(stack, owner, "are active")
    set_up_payouts(Chatter(stack.telegram, owner, timeout=20), steps.append)  # played again: nothing to do
    assert steps[-1] == "payouts are set up already"
    with db.session_scope() as session:
        account = session.get(Business, business_id).stripe_account_id

    _pay, session_id = reserve_through_the_chat(stack, user, offer_id, 2)
    stack.stripe.pay(session_id)
    wait_for_message(stack, user, "Your pickup code")
    (transfer,) = [t for t in stack.stripe.objects("transfer") if t["destination"] == account]
    assert transfer["amount"] == 1000 and stack.stripe.balance(account) == {"eur": 900}  # 10 % fee

    offers = say(stack, owner, "/myoffers", "Your offers")
    stack.telegram.press_button(owner, offers["message_id"], "bizearn")
    statement = wait_until(lambda: next((m for m in stack.telegram.messages(owner)
                                         if m.get("photo") and "Earnings of" in plain(m.get("caption"))), None))
    caption = plain(statement["caption"])
    assert "Earnings of Bäckerei Mond" in caption and "Sales €10.00" in caption and "Net €9.00" in caption
