"""Builders for the API objects the fake returns.

Every builder starts from a deep copy of Stripe's own example object in `fixtures.json`
(see FIXTURES_LICENSE.md) and only overwrites values, never adds keys, so the shape of each
response (field set, `object` names, nesting) is the shape the real API and the official
library expect.
"""

from __future__ import annotations

import copy
import json
import secrets
import string
from pathlib import Path
from typing import Any

# The API version stripe-python 16.1.0 pins (stripe/_api_version.py); events carry it.
API_VERSION = "2026-10-28.endive"

_TEMPLATES: dict[str, dict[str, Any]] = json.loads(
    Path(__file__).with_name("fixtures.json").read_text(encoding="utf-8")
)["resources"]

_ID_ALPHABET = string.ascii_letters + string.digits

ZERO_DECIMAL_CURRENCIES = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)
_CURRENCY_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "ils": "₪"}

# Prefix -> object name, so an id alone is enough to find (or expand) an object.
ID_PREFIXES = {
    "cs_": "checkout.session",
    "pi_": "payment_intent",
    "ch_": "charge",
    "re_": "refund",
    "evt_": "event",
    "acct_": "account",
    "trr_": "transfer_reversal",
    "tr_": "transfer",
    "fee_": "application_fee",
    "fr_": "fee_refund",
    "po_": "payout",
    "txn_": "balance_transaction",
}


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def new_checkout_session_id() -> str:
    return new_id("cs_test_a1", 56)  # Real test-mode ids are this long.


def kind_of_id(object_id: str) -> str | None:
    return next((kind for prefix, kind in ID_PREFIXES.items() if object_id.startswith(prefix)), None)


def format_amount(amount: int, currency: str) -> str:
    """How Stripe writes money in messages: `$25.00`, `¥500`, `CHF 12.50`."""
    number = f"{amount:,}" if currency in ZERO_DECIMAL_CURRENCIES else f"{amount / 100:,.2f}"
    symbol = _CURRENCY_SYMBOLS.get(currency)
    return f"{symbol}{number}" if symbol else f"{currency.upper()} {number}"


def _from_template(resource: str, values: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(_TEMPLATES[resource])
    unknown = set(values) - set(obj)
    if unknown:
        raise KeyError(f"{resource} has no field(s) {sorted(unknown)}; the fixture decides the shape")
    obj.update(values)
    return obj


def _template_part(resource: str, *path: str) -> Any:
    node: Any = _TEMPLATES[resource]
    for key in path:
        node = node[key]
    return copy.deepcopy(node)


def _blank(mapping: dict[str, Any]) -> dict[str, Any]:
    return dict.fromkeys(mapping)


def list_object(data: list[dict[str, Any]], url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def checkout_session(**values: Any) -> dict[str, Any]:
    """An open, unpaid payment-mode session; `values` must include the caller-chosen fields."""
    invoice_data = _blank(_template_part("checkout.session", "invoice_creation", "invoice_data"))
    invoice_data["metadata"] = {}
    defaults: dict[str, Any] = {
        "after_expiration": None,
        "allow_promotion_codes": None,
        "automatic_tax": {"enabled": False, "liability": None, "status": None, "provider": None},
        "billing_address_collection": None,
        "cancel_url": None,
        "client_reference_id": None,
        "client_secret": None,
        "consent": None,
        "consent_collection": None,
        "custom_fields": [],
        "custom_text": _blank(_template_part("checkout.session", "custom_text")),
        "customer": None,
        "customer_creation": "if_required",
        "customer_details": None,
        "customer_email": None,
        "invoice": None,
        "invoice_creation": {"enabled": False, "invoice_data": invoice_data},
        "livemode": False,
        "locale": None,
        "metadata": {},
        "mode": "payment",
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": None,
        "payment_method_options": {},
        "payment_method_types": ["card"],
        "payment_status": "unpaid",
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": "open",
        "submit_type": None,
        "subscription": None,
        "success_url": None,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "adaptive_pricing": {"enabled": False},
        "discounts": [],
        "collected_information": None,
        "permissions": None,
        "wallet_options": None,
        "origin_context": None,
        "currency_conversion": None,
        "customer_account": None,
        "integration_identifier": None,
        "managed_payments": {"enabled": False},
    }
    return _from_template("checkout.session", {**defaults, **values})


def customer_details(email: str) -> dict[str, Any]:
    details = _blank(_template_part("checkout.session", "customer_details"))
    details.update(
        address=_blank(_template_part("checkout.session", "customer_details", "address")),
        email=email,
        tax_exempt="none",
        tax_ids=[],
    )
    return details


def line_item(*, name: str, unit_amount: int, quantity: int, currency: str, created: int) -> dict[str, Any]:
    price = _template_part("item", "price")
    price.update(
        active=False,  # Prices made from `price_data` are inline and inactive.
        created=created,
        currency=currency,
        custom_unit_amount=None,
        id=new_id("price_"),
        product=new_id("prod_", 14),
        recurring=None,
        transform_quantity=None,
        type="one_time",
        unit_amount=unit_amount,
        unit_amount_decimal=str(unit_amount),
    )
    subtotal = unit_amount * quantity
    return _from_template(
        "item",
        {
            "amount_discount": 0,
            "amount_subtotal": subtotal,
            "amount_tax": 0,
            "amount_total": subtotal,
            "currency": currency,
            "description": name,
            "id": new_id("li_"),
            "price": price,
            "quantity": quantity,
            "metadata": {},
            "adjustable_quantity": None,
        },
    )


def payment_intent(
    *,
    created: int,
    amount: int,
    currency: str,
    status: str,
    latest_charge: str,
    payment_method: str,
    metadata: dict[str, str],
    description: str | None,
) -> dict[str, Any]:
    intent_id = new_id("pi_")
    return _from_template(
        "payment_intent",
        {
            "amount": amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": amount if status == "succeeded" else 0,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "capture_method": "automatic_async",
            "client_secret": f"{intent_id}_secret_{new_id('', 25)}",
            "created": created,
            "currency": currency,
            "description": description,
            "id": intent_id,
            "last_payment_error": None,
            "latest_charge": latest_charge,
            "metadata": metadata,
            "next_action": None,
            "payment_method": payment_method,
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "processing": None,
            "shipping": None,
            "status": status,
            "transfer_data": None,
            "managed_payments": None,
        },
    )


def charge(
    *,
    charge_id: str,
    created: int,
    amount: int,
    currency: str,
    status: str,
    payment_intent: str,
    payment_method: str,
    metadata: dict[str, str],
    billing_email: str,
) -> dict[str, Any]:
    billing_details = _template_part("charge", "billing_details")
    billing_details.update(address=_blank(billing_details["address"]), email=billing_email, name=None)
    card_details = _template_part("charge", "payment_method_details")
    card_details["card"].update(
        amount_authorized=amount,
        fingerprint=new_id("", 16),
        wallet=None,
        overcapture={"maximum_amount_capturable": amount, "status": "unavailable"},
    )
    outcome = _template_part("charge", "outcome")
    outcome.update(network_status="approved_by_network", seller_message="Payment complete.", type="authorized")
    paid = status == "succeeded"
    return _from_template(
        "charge",
        {
            "amount": amount,
            "amount_captured": amount if paid else 0,
            "amount_refunded": 0,
            "balance_transaction": new_id("txn_") if paid else None,
            "billing_details": billing_details,
            "calculated_statement_descriptor": "SANDBOX",
            "captured": paid,
            "created": created,
            "currency": currency,
            "description": None,
            "id": charge_id,
            "metadata": metadata,
            "outcome": outcome,
            "paid": paid,
            "payment_intent": payment_intent,
            "payment_method": payment_method,
            "payment_method_details": card_details,
            "receipt_url": None,
            "refunded": False,
            "refunds": list_object([], f"/v1/charges/{charge_id}/refunds"),
            "shipping": None,
            "status": status,
            "transfer_data": None,
            "source": None,
        },
    )


def refund(
    *,
    created: int,
    amount: int,
    currency: str,
    charge_id: str,
    payment_intent: str,
    reason: str | None,
    metadata: dict[str, str],
) -> dict[str, Any]:
    return _from_template(
        "refund",
        {
            "amount": amount,
            "balance_transaction": new_id("txn_"),
            "charge": charge_id,
            "created": created,
            "currency": currency,
            "destination_details": {"card": {"type": "refund"}, "type": "card"},
            "id": new_id("re_"),
            "metadata": metadata,
            "payment_intent": payment_intent,
            "reason": reason,
            "status": "succeeded",
        },
    )


def event(
    *,
    event_type: str,
    data_object: dict[str, Any],
    created: int,
    request_id: str | None,
    idempotency_key: str | None,
    pending_webhooks: int,
    account: str | None = None,
) -> dict[str, Any]:
    """An event; ``account``: the connected account it is about (a Connect event), which Stripe
    puts in a top-level ``account`` field that the example event lacks (see FIXTURES_LICENSE.md)."""
    built = _from_template(
        "event",
        {
            "api_version": API_VERSION,
            "created": created,
            "data": {"object": data_object},
            "id": new_id("evt_"),
            "pending_webhooks": pending_webhooks,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": event_type,
        },
    )
    if account is not None:
        built["account"] = account
    return built


# --------------------------------------------------------------------------- Connect

ACCOUNT_REQUIREMENTS = ["business_profile.url", "external_account", "tos_acceptance.date", "tos_acceptance.ip"]


def account(*, created: int, country: str, email: str | None, business_name: str | None,
            metadata: dict[str, str], default_currency: str) -> dict[str, Any]:
    """A new Express account: nothing submitted, so it can neither take charges nor pay out."""
    account_id = new_id("acct_", 16)
    profile = _template_part("account", "business_profile")
    profile["name"] = business_name
    requirements = _template_part("account", "requirements")
    requirements.update(currently_due=list(ACCOUNT_REQUIREMENTS), eventually_due=list(ACCOUNT_REQUIREMENTS),
                        disabled_reason="requirements.past_due")
    external = _template_part("account", "external_accounts")
    external["url"] = f"/v1/accounts/{account_id}/external_accounts"
    return _from_template("account", {
        "business_profile": profile,
        "capabilities": {"card_payments": "inactive", "transfers": "inactive"},
        "charges_enabled": False,
        "country": country,
        "created": created,
        "default_currency": default_currency,
        "details_submitted": False,
        "email": email,
        "external_accounts": external,
        "id": account_id,
        "metadata": metadata,
        "payouts_enabled": False,
        "requirements": requirements,
        "type": "express",
    })


def account_link(*, created: int, expires_at: int, url: str) -> dict[str, Any]:
    return _from_template("account_link", {"created": created, "expires_at": expires_at, "url": url})


def application(name: str) -> dict[str, Any]:
    return _from_template("application", {"id": new_id("ca_", 32), "name": name})


def balance_transaction(*, created: int, amount: int, fee: int, currency: str, source: str, kind: str,
                        description: str | None = None) -> dict[str, Any]:
    return _from_template("balance_transaction", {
        "amount": amount, "available_on": created, "created": created, "currency": currency,
        "description": description, "fee": fee, "fee_details": [], "id": new_id("txn_"), "net": amount - fee,
        "reporting_category": kind, "source": source, "status": "available", "type": kind,
    })


def transfer(*, created: int, amount: int, currency: str, destination: str, source_transaction: str,
             balance_transaction_id: str, transfer_group: str | None) -> dict[str, Any]:
    transfer_id = new_id("tr_")
    return _from_template("transfer", {
        "amount": amount, "amount_reversed": 0, "balance_transaction": balance_transaction_id, "created": created,
        "currency": currency, "destination": destination, "destination_payment": new_id("py_"), "id": transfer_id,
        "reversals": list_object([], f"/v1/transfers/{transfer_id}/reversals"), "reversed": False,
        "source_transaction": source_transaction, "transfer_group": transfer_group,
    })


def transfer_reversal(*, created: int, amount: int, currency: str, transfer_id: str, source_refund: str,
                      balance_transaction_id: str) -> dict[str, Any]:
    return _from_template("transfer_reversal", {
        "amount": amount, "balance_transaction": balance_transaction_id, "created": created, "currency": currency,
        "destination_payment_refund": new_id("pyr_"), "id": new_id("trr_"), "source_refund": source_refund,
        "transfer": transfer_id,
    })


def application_fee(*, created: int, amount: int, currency: str, account_id: str, application_id: str,
                    charge_id: str, balance_transaction_id: str) -> dict[str, Any]:
    fee_id = new_id("fee_")
    return _from_template("application_fee", {
        "account": account_id, "amount": amount, "amount_refunded": 0, "application": application_id,
        "balance_transaction": balance_transaction_id, "charge": charge_id, "created": created, "currency": currency,
        "fee_source": {"charge": charge_id, "type": "charge"}, "id": fee_id,
        "refunds": list_object([], f"/v1/application_fees/{fee_id}/refunds"), "refunded": False,
    })


def fee_refund(*, created: int, amount: int, currency: str, fee_id: str, balance_transaction_id: str) -> dict[str, Any]:
    return _from_template("fee_refund", {
        "amount": amount, "balance_transaction": balance_transaction_id, "created": created, "currency": currency,
        "fee": fee_id, "id": new_id("fr_"),
    })


def payout(*, created: int, amount: int, currency: str, balance_transaction_id: str) -> dict[str, Any]:
    return _from_template("payout", {
        "amount": amount, "arrival_date": created, "balance_transaction": balance_transaction_id, "created": created,
        "currency": currency, "destination": new_id("ba_"), "id": new_id("po_"), "status": "paid",
    })
