"""Stripe Connect in the fake: Express accounts, onboarding links, destination charges with an
application fee, their refunds (transfer reversals, fee refunds), and a connected account's
balance and payouts.

How the money moves, as Stripe does it for a destination charge of amount A with
``application_fee_amount`` F to account X: the platform's charge succeeds; a transfer of A goes to
X; an application fee of F comes back from X. X's balance: +A (payment) − F (application fee).
A refund with ``reverse_transfer`` reverses the transfer in proportion to the refund; with
``refund_application_fee`` the fee goes back to X in the same proportion.

Events about a connected account (``account.updated``, ``account.application.deauthorized``,
``payout.paid``) carry its id in the event's top-level ``account`` field, as Stripe's Connect
events do.
"""

from __future__ import annotations

import builtins
import copy
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import errors, objects

ACCOUNT_LINK_LIFETIME = 300  # seconds, as Stripe's links
APPLICATION_NAME = "Surplus (sandbox)"


@dataclass
class OnboardingLink:
    account: str
    return_url: str
    refresh_url: str
    expires_at: int
    used: bool = False


@dataclass
class Destination:
    """What a Checkout Session's payment_intent_data asked for its charge."""

    account: str
    application_fee_amount: int | None
    transfer_group: str | None


class ConnectMixin:
    """Mixed into FakeState; uses its lock, objects, clock and events."""

    if TYPE_CHECKING:  # what FakeState provides
        lock: Any
        _objects: dict[str, dict[str, dict[str, Any]]]

        def timestamp(self) -> int: ...
        def _store(self, obj: dict[str, Any]) -> None: ...
        def _require(self, kind: str, object_id: str, *, param: str = "id") -> dict[str, Any]: ...
        def _emit(self, event_type: str, obj: dict[str, Any], ctx: Any, *, account: str | None = None) -> None: ...

    def _clear_connect(self) -> None:
        self._links: dict[str, OnboardingLink] = {}
        self._account_transactions: dict[str, builtins.list[str]] = {}  # account -> its balance transactions
        self._account_payouts: dict[str, builtins.list[str]] = {}  # account -> its payouts
        self._application = objects.application(APPLICATION_NAME)

    # ---------------------------------------------------------------- accounts

    def create_account(self, *, account_type: str, country: str, email: str | None, business_name: str | None,
                       metadata: dict[str, str], default_currency: str | None) -> dict[str, Any]:
        if account_type != "express":
            raise errors.invalid_param("type", "The local Stripe fake supports only type=express accounts.")
        with self.lock:
            account = objects.account(created=self.timestamp(), country=country, email=email,
                                      business_name=business_name, metadata=metadata,
                                      default_currency=default_currency or "eur")
            self._store(account)
            self._account_transactions[account["id"]] = []
            return copy.deepcopy(account)

    def update_account(self, ctx: Any, account_id: str, *, metadata: dict[str, str] | None,
                       business_name: str | None) -> dict[str, Any]:
        with self.lock:
            account = self._require("account", account_id, param="account")
            if metadata is not None:
                account["metadata"].update(metadata)
            if business_name is not None:
                account["business_profile"]["name"] = business_name
            self._emit("account.updated", account, ctx, account=account_id)
            return copy.deepcopy(account)

    def create_account_link(self, *, account_id: str, refresh_url: str, return_url: str, link_type: str,
                            page_base_url: str) -> dict[str, Any]:
        if link_type not in ("account_onboarding", "account_update"):
            raise errors.invalid_param("type", f"Invalid type: {link_type}.")
        with self.lock:
            self._require("account", account_id, param="account")
            token = secrets.token_urlsafe(12)
            now = self.timestamp()
            self._links[token] = OnboardingLink(account_id, return_url, refresh_url, now + ACCOUNT_LINK_LIFETIME)
            return objects.account_link(created=now, expires_at=now + ACCOUNT_LINK_LIFETIME,
                                        url=f"{page_base_url}/connect/onboarding/{token}")

    def onboarding_link(self, token: str) -> tuple[OnboardingLink, dict[str, Any]] | None:
        """The link and its account, or None when the link is unknown."""
        with self.lock:
            link = self._links.get(token)
            if link is None:
                return None
            return copy.deepcopy(link), copy.deepcopy(self._objects["account"][link.account])

    def finish_onboarding(self, token: str, *, complete: bool) -> str:
        """The business leaves the hosted onboarding: with everything filled in (``complete``) or
        not. Returns where Stripe sends it: the return URL, or the refresh URL for a link that
        expired or was used before (a new link is needed then)."""
        with self.lock:
            link = self._links.get(token)
            if link is None:
                raise errors.invalid_request("This account link is not valid.")
            if link.used or link.expires_at < self.timestamp():
                return link.refresh_url
            link.used = True
            account = self._objects["account"][link.account]
            if complete:
                self._set_account(account, enabled=True)
            else:
                account["requirements"]["currently_due"] = list(objects.ACCOUNT_REQUIREMENTS)
            self._emit("account.updated", account, None, account=account["id"])
            return link.return_url

    def _set_account(self, account: dict[str, Any], *, enabled: bool, reason: str | None = None) -> None:
        due = [] if enabled else list(objects.ACCOUNT_REQUIREMENTS)
        account.update(details_submitted=True, charges_enabled=enabled, payouts_enabled=enabled,
                       capabilities={"card_payments": "active" if enabled else "inactive",
                                     "transfers": "active" if enabled else "inactive"})
        account["requirements"].update(currently_due=due, past_due=due if reason else [],
                                       eventually_due=due, disabled_reason=reason if not enabled else None)

    def restrict_account(self, account_id: str, *, restricted: bool = True) -> dict[str, Any]:
        """Stripe disables (or re-enables) charges and payouts of an account, as after a review."""
        with self.lock:
            account = self._require("account", account_id, param="account")
            self._set_account(account, enabled=not restricted, reason="requirements.past_due" if restricted else None)
            self._emit("account.updated", account, None, account=account_id)
            return copy.deepcopy(account)

    def deauthorize_account(self, account_id: str) -> None:
        """The business disconnects the platform from its account."""
        with self.lock:
            account = self._require("account", account_id, param="account")
            account.update(charges_enabled=False, payouts_enabled=False)
            self._emit("account.application.deauthorized", self._application, None, account=account_id)

    # ------------------------------------------------------- destination charges

    def check_destination(self, destination: Destination | None, amount: int) -> None:
        if destination is None:
            return
        account = self._objects["account"].get(destination.account)
        if account is None:
            raise errors.no_such("destination", destination.account,
                                 param="payment_intent_data[transfer_data][destination]")
        if not account["charges_enabled"]:
            raise errors.invalid_param(
                "payment_intent_data[transfer_data][destination]",
                "Your destination account needs to have at least one of the following capabilities enabled: "
                "transfers, crypto_transfers, legacy_payments",
                code="insufficient_capabilities_for_transfer",
            )
        fee = destination.application_fee_amount
        if fee is not None and fee > amount:
            raise errors.invalid_param("payment_intent_data[application_fee_amount]",
                                       "The application fee cannot be greater than the amount of the charge.")

    def settle_destination(self, charge: dict[str, Any], intent: dict[str, Any], destination: Destination) -> None:
        """A destination charge succeeded: transfer it to the account, take the application fee back."""
        now, currency, amount = self.timestamp(), charge["currency"], charge["amount"]
        account_id = destination.account
        paid_in = self._balance_transaction(account_id, amount, currency, charge["id"], "payment")
        transfer = objects.transfer(created=now, amount=amount, currency=currency, destination=account_id,
                                    source_transaction=charge["id"], balance_transaction_id=paid_in,
                                    transfer_group=destination.transfer_group)
        self._store(transfer)
        fee_amount = destination.application_fee_amount or 0
        fee_id = None
        if fee_amount:
            fee_txn = self._balance_transaction(account_id, -fee_amount, currency, charge["id"], "application_fee")
            fee = objects.application_fee(created=now, amount=fee_amount, currency=currency, account_id=account_id,
                                          application_id=self._application["id"], charge_id=charge["id"],
                                          balance_transaction_id=fee_txn)
            self._store(fee)
            fee_id = fee["id"]
        charge.update(application_fee=fee_id, application_fee_amount=fee_amount or None,
                      transfer_data={"amount": None, "destination": account_id},
                      transfer_group=destination.transfer_group)
        intent.update(application_fee_amount=fee_amount or None, transfer_data={"destination": account_id},
                      transfer_group=destination.transfer_group)

    def reverse_for_refund(self, charge: dict[str, Any], refund: dict[str, Any], *, reverse_transfer: bool,
                           refund_application_fee: bool) -> None:
        """A refund of a destination charge: reverse the transfer and give back the fee, in proportion."""
        transfer = next((t for t in self._objects["transfer"].values()
                         if t["source_transaction"] == charge["id"]), None)
        if transfer is None:
            if reverse_transfer or refund_application_fee:
                raise errors.invalid_request("This charge has no transfer to reverse.")
            return
        now, currency, account_id = self.timestamp(), charge["currency"], transfer["destination"]
        share = (refund["amount"], charge["amount"])
        if reverse_transfer:
            amount = min(transfer["amount"] * share[0] // share[1], transfer["amount"] - transfer["amount_reversed"])
            txn = self._balance_transaction(account_id, -amount, currency, transfer["id"], "transfer_refund")
            reversal = objects.transfer_reversal(created=now, amount=amount, currency=currency,
                                                 transfer_id=transfer["id"], source_refund=refund["id"],
                                                 balance_transaction_id=txn)
            self._store(reversal)
            transfer["amount_reversed"] += amount
            transfer["reversed"] = transfer["amount_reversed"] == transfer["amount"]
            transfer["reversals"]["data"].insert(0, copy.deepcopy(reversal))
        fee = self._objects["application_fee"].get(charge.get("application_fee") or "")
        if refund_application_fee and fee is not None:
            amount = min(fee["amount"] * share[0] // share[1], fee["amount"] - fee["amount_refunded"])
            txn = self._balance_transaction(account_id, amount, currency, fee["id"], "application_fee_refund")
            fee_back = objects.fee_refund(created=now, amount=amount, currency=currency, fee_id=fee["id"],
                                          balance_transaction_id=txn)
            self._store(fee_back)
            fee["amount_refunded"] += amount
            fee["refunded"] = fee["amount_refunded"] == fee["amount"]
            fee["refunds"]["data"].insert(0, copy.deepcopy(fee_back))

    # ------------------------------------------------------ balance and payouts

    def _balance_transaction(self, account_id: str, amount: int, currency: str, source: str, kind: str) -> str:
        txn = objects.balance_transaction(created=self.timestamp(), amount=amount, fee=0, currency=currency,
                                          source=source, kind=kind)
        self._store(txn)
        self._account_transactions.setdefault(account_id, []).append(txn["id"])
        return str(txn["id"])

    def account_balance(self, account_id: str) -> dict[str, int]:
        """What the account holds, by currency (its balance transactions summed)."""
        with self.lock:
            self._require("account", account_id, param="account")
            balance: dict[str, int] = {}
            for txn_id in self._account_transactions.get(account_id, []):
                txn = self._objects["balance_transaction"][txn_id]
                balance[txn["currency"]] = balance.get(txn["currency"], 0) + txn["net"]
            return balance

    def pay_out(self, account_id: str) -> builtins.list[dict[str, Any]]:
        """Stripe pays the account's whole available balance out to its bank (one payout per
        currency with money in it), as its payout schedule would."""
        with self.lock:
            account = self._require("account", account_id, param="account")
            if not account["payouts_enabled"]:
                raise errors.invalid_request("This account cannot receive payouts.", code="account_invalid")
            made = []
            for currency, amount in sorted(self.account_balance(account_id).items()):
                if amount <= 0:
                    continue
                txn = self._balance_transaction(account_id, -amount, currency, "payout", "payout")
                payout = objects.payout(created=self.timestamp(), amount=amount, currency=currency,
                                        balance_transaction_id=txn)
                self._objects["balance_transaction"][txn]["source"] = payout["id"]
                self._store(payout)
                self._account_payouts.setdefault(account_id, []).append(payout["id"])
                self._emit("payout.paid", payout, None, account=account_id)
                made.append(copy.deepcopy(payout))
            return made

    def transactions_of(self, account_id: str) -> builtins.list[str]:
        with self.lock:
            return list(self._account_transactions.get(account_id, []))

    def payouts_of(self, account_id: str) -> builtins.list[dict[str, Any]]:
        with self.lock:
            ids = set(self._account_payouts.get(account_id, []))
            return [copy.deepcopy(p) for p in reversed(self._objects["payout"].values()) if p["id"] in ids]
