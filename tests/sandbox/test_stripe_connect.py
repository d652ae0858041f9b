"""Stripe Connect in the fake, through the real `stripe` library: Express accounts and their hosted
onboarding, destination charges with an application fee, refunds that reverse the transfer and
give back the fee, and a connected account's balance and payouts. Every object has the exact
fields of Stripe's example object of its type."""

from __future__ import annotations

import pytest
import stripe

from sandbox.stripe_fake import StripeFake
from tests.sandbox.test_stripe_fake import FIXTURES

pytestmark = pytest.mark.usefixtures("stripe_on_fake")  # tests/sandbox/conftest.py


def same_shape(obj: dict, kind: str) -> None:
    extra = {"account"} if kind == "event" and "account" in obj else set()
    assert set(obj) == set(FIXTURES[kind]) | extra, kind


def onboarded_account(fake: StripeFake) -> stripe.Account:
    account = stripe.Account.create(type="express", country="DE", business_profile={"name": "Bäckerei"},
                                    metadata={"business_id": "7"})
    link = stripe.AccountLink.create(account=account.id, refresh_url="https://x.test/refresh",
                                     return_url="https://x.test/back", type="account_onboarding")
    assert fake.onboard(link.url) == "https://x.test/back"
    return stripe.Account.retrieve(account.id)


def destination_session(account: str, unit_amount: int, quantity: int, fee: int, **intent: object):
    return stripe.checkout.Session.create(
        mode="payment", success_url="https://x.test/ok",
        line_items=[{"price_data": {"currency": "eur", "unit_amount": unit_amount, "product_data": {"name": "Bag"}},
                     "quantity": quantity}],
        payment_intent_data={"transfer_data": {"destination": account}, "application_fee_amount": fee, **intent})


def test_onboarding_finished_or_not_and_the_events_that_say_so(fake: StripeFake) -> None:
    account = stripe.Account.create(type="express", country="DE", metadata={"business_id": "7"})
    same_shape(account.to_dict(), "account")
    assert (account.charges_enabled, account.details_submitted, account.type) == (False, False, "express")
    link = stripe.AccountLink.create(account=account.id, refresh_url="https://x.test/refresh",
                                     return_url="https://x.test/back", type="account_onboarding")
    same_shape(link.to_dict(), "account_link")
    assert fake.onboard(link.url, complete=False) == "https://x.test/back"
    assert fake.onboard(link.url) == "https://x.test/refresh"  # a link works once
    assert stripe.Account.retrieve(account.id).charges_enabled is False
    fresh = stripe.AccountLink.create(account=account.id, refresh_url="https://x.test/refresh",
                                      return_url="https://x.test/back", type="account_onboarding")
    fake.onboard(fresh.url)
    assert stripe.Account.retrieve(account.id).charges_enabled is True
    updates = fake.events("account.updated")
    assert [e["account"] for e in updates] == [account.id, account.id]
    assert [e["data"]["object"]["charges_enabled"] for e in updates] == [False, True]
    for event in updates:
        same_shape(event, "event")
    fake.restrict_account(account.id)
    fake.deauthorize_account(account.id)
    assert fake.events("account.updated")[-1]["data"]["object"]["requirements"]["disabled_reason"] \
        == "requirements.past_due"
    (gone,) = fake.events("account.application.deauthorized")
    assert gone["account"] == account.id and gone["data"]["object"]["object"] == "application"


def test_a_destination_charge_transfers_takes_the_fee_and_a_refund_reverses_both(fake: StripeFake) -> None:
    account = onboarded_account(fake)
    session = destination_session(account.id, 450, 2, 90, transfer_group="order-1")
    paid = fake.pay(session.id)
    intent = stripe.PaymentIntent.retrieve(paid["payment_intent"])
    assert intent.application_fee_amount == 90 and intent.transfer_data.destination == account.id
    (transfer,) = stripe.Transfer.list(destination=account.id).data
    (fee,) = stripe.ApplicationFee.list(charge=intent.latest_charge).data
    same_shape(transfer.to_dict(), "transfer")
    same_shape(fee.to_dict(), "application_fee")
    assert (transfer.amount, fee.amount, fee.account) == (900, 90, account.id)
    assert fake.balance(account.id) == {"eur": 810}

    stripe.Refund.create(payment_intent=intent.id, reverse_transfer=True, refund_application_fee=True)
    transfer = stripe.Transfer.retrieve(transfer.id)
    fee = stripe.ApplicationFee.retrieve(fee.id)
    assert (transfer.amount_reversed, transfer.reversed, fee.amount_refunded, fee.refunded) == (900, True, 90, True)
    same_shape(transfer.reversals.data[0].to_dict(), "transfer_reversal")
    same_shape(fee.refunds.data[0].to_dict(), "fee_refund")
    assert fake.balance(account.id) == {"eur": 0}


def test_a_destination_must_be_able_to_take_charges() -> None:
    account = stripe.Account.create(type="express", country="DE")
    with pytest.raises(stripe.InvalidRequestError) as refused:
        destination_session(account.id, 450, 1, 45)
    assert refused.value.code == "insufficient_capabilities_for_transfer"


def test_payouts_and_balance_transactions_of_a_connected_account(fake: StripeFake) -> None:
    account = onboarded_account(fake)
    session = destination_session(account.id, 1000, 1, 100)
    fake.pay(session.id)
    (payout,) = fake.pay_out(account.id)
    listed = stripe.Payout.list(stripe_account=account.id).data
    assert [p.id for p in listed] == [payout["id"]] and listed[0].amount == 900
    same_shape(listed[0].to_dict(), "payout")
    kinds = [t.type for t in stripe.BalanceTransaction.list(stripe_account=account.id).data]
    assert sorted(kinds) == ["application_fee", "payment", "payout"]
    assert fake.events("payout.paid")[0]["account"] == account.id
    assert stripe.Payout.list(stripe_account=onboarded_account(fake).id).data == []
