"""Python wrapper of the control API, usable against any running fake (thread or process)."""

from __future__ import annotations

from typing import Any

import httpx


class SandboxError(Exception):
    """The control API refused a request; `body` is its JSON answer."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status}: {body.get('error', body)}")
        self.status = status
        self.body = body


class PaymentDeclined(SandboxError):
    """pay() met an armed card_decline fault; the session stays open."""

    @property
    def session(self) -> dict[str, Any]:
        return self.body["session"]


class StripeFakeClient:
    def __init__(self, url: str) -> None:
        self._base_url = url.rstrip("/")
        self._http: httpx.Client | None = None

    @property
    def url(self) -> str:
        """Base URL: set `stripe.api_base` (or base_addresses={"api": url}) to this."""
        return self._base_url

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def _client(self) -> httpx.Client:
        if self._http is None:
            # trust_env=False: never send local control traffic through an environment proxy.
            self._http = httpx.Client(base_url=self.url, timeout=70, trust_env=False)
        return self._http

    def _call(self, method: str, path: str, *, json: dict[str, Any] | None = None, **query: Any) -> Any:
        response = self._client().request(
            method, path, json=json, params={k: v for k, v in query.items() if v is not None}
        )
        body = response.json()
        if response.status_code == 402 and path.endswith("/decline"):
            return body  # The decline asked for.
        if response.status_code == 402 and path.endswith("/pay"):
            raise PaymentDeclined(response.status_code, body)
        if response.status_code >= 400:
            raise SandboxError(response.status_code, body)
        return body

    # ----------------------------------------------------------- checkout

    def pay(
        self,
        session_id: str,
        *,
        asynchronous: bool = False,
        outcome: str | None = "succeeded",
        settle_after: float = 0.0,
        email: str | None = None,
    ) -> dict[str, Any]:
        """Pay a session as the customer would; returns the session. Raises PaymentDeclined.

        asynchronous=True completes it unpaid (a delayed method) and settles to `outcome`
        after `settle_after` seconds; outcome=None leaves it processing until settle()."""
        body: dict[str, Any] = {"async": asynchronous, "outcome": outcome, "settle_after": settle_after}
        if email is not None:
            body["email"] = email
        return self._call("POST", f"/_sandbox/checkout/{session_id}/pay", json=body)["session"]

    def decline(self, session_id: str, decline_code: str = "generic_decline") -> dict[str, Any]:
        """Decline the customer's card; returns {"error": {...card_error...}, "session": {...}}."""
        return self._call("POST", f"/_sandbox/checkout/{session_id}/decline", json={"decline_code": decline_code})

    def settle(self, session_id: str, outcome: str = "succeeded") -> dict[str, Any]:
        return self._call("POST", f"/_sandbox/checkout/{session_id}/settle", json={"outcome": outcome})["session"]

    # ------------------------------------------------------------- faults

    def add_fault(
        self,
        kind: str,
        *,
        path: str = "*",
        method: str | None = None,
        count: int | None = 1,
        delay_seconds: float = 0.0,
        decline_code: str = "generic_decline",
    ) -> dict[str, Any]:
        """kind: "api_error" (500), "rate_limit" (429), "delay" (answer after delay_seconds,
        the work done first) or "card_decline" (next payments are declined). `path` is an
        fnmatch pattern on the URL path; count=None keeps the fault until clear_faults()."""
        body = {
            "kind": kind,
            "path": path,
            "method": method,
            "count": count,
            "delay_seconds": delay_seconds,
            "decline_code": decline_code,
        }
        return self._call("POST", "/_sandbox/faults", json=body)

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/_sandbox/faults")["data"]

    def clear_faults(self) -> None:
        self._call("DELETE", "/_sandbox/faults")

    # ----------------------------------------------------------- webhooks

    def configure_webhook(self, url: str | None = None, secret: str | None = None, **switches: Any) -> dict[str, Any]:
        """Set the endpoint; unspecified settings keep their current values. Switches:
        duplicates, out_of_order, reorder_window, drop_first_attempts, enabled_events,
        max_attempts, retry_base_delay, timeout. Returns the settings, secret included."""
        body = {key: value for key, value in {"url": url, "secret": secret, **switches}.items() if value is not None}
        return self._call("POST", "/_sandbox/webhook", json=body)["webhook"]

    def webhook(self) -> dict[str, Any] | None:
        return self._call("GET", "/_sandbox/webhook")["webhook"]

    def remove_webhook(self) -> None:
        self._call("DELETE", "/_sandbox/webhook")

    def deliveries(self, event_id: str | None = None) -> list[dict[str, Any]]:
        """Every delivery attempt so far, oldest first, with its status."""
        return self._call("GET", "/_sandbox/deliveries", event_id=event_id)["data"]

    def wait_for_deliveries(self, timeout: float = 10.0) -> bool:
        """Block until no delivery is queued, retrying or in flight; False on timeout."""
        return self._call("GET", "/_sandbox/deliveries", wait_idle=timeout)["idle"]

    # --------------------------------------------------------------- misc

    # ------------------------------------------------------------ Connect

    def onboard(self, link_url: str, *, complete: bool = True) -> str:
        """Press "Complete" (or "Leave unfinished") on an account link's onboarding page, as the
        business would; returns where Stripe sends it next (the return or the refresh URL)."""
        path = link_url.split("/connect/onboarding/", 1)[1]
        response = self._client().post(f"/connect/onboarding/{path}/{'complete' if complete else 'leave'}",
                                       follow_redirects=False)
        if response.status_code == 303:
            return response.headers["location"]
        if response.status_code >= 400:
            raise SandboxError(response.status_code, {"error": {"message": response.text[:300]}})
        return response.text.rsplit("href='", 1)[1].split("'", 1)[0].replace("&amp;", "&")

    def restrict_account(self, account_id: str, restricted: bool = True) -> dict[str, Any]:
        """Stripe disables (restricted=False: enables again) the account's charges and payouts."""
        path = f"/_sandbox/accounts/{account_id}/restrict"
        return self._call("POST", path, json={"restricted": restricted})["account"]

    def deauthorize_account(self, account_id: str) -> None:
        """The business disconnects the platform (account.application.deauthorized)."""
        self._call("POST", f"/_sandbox/accounts/{account_id}/deauthorize", json={})

    def pay_out(self, account_id: str) -> list[dict[str, Any]]:
        """Stripe pays the account's available balance out to its bank now (payout.paid)."""
        return self._call("POST", f"/_sandbox/accounts/{account_id}/payouts", json={})["data"]

    def balance(self, account_id: str) -> dict[str, int]:
        return self._call("GET", f"/_sandbox/accounts/{account_id}/balance")["available"]

    def objects(self, type: str | None = None) -> list[dict[str, Any]]:
        """Stored objects (checkout.session, payment_intent, charge, refund, event), oldest first."""
        return self._call("GET", "/_sandbox/objects", type=type)["data"]

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.objects("event") if type is None or e["type"] == type]

    def advance_clock(self, seconds: float) -> int:
        """Move the fake clock; open sessions past expires_at expire. Returns the new time."""
        return self._call("POST", "/_sandbox/clock", json={"advance": seconds})["now"]

    def now(self) -> int:
        return self._call("GET", "/_sandbox/clock")["now"]

    def reset(self) -> None:
        self._call("POST", "/_sandbox/reset")

    def health(self) -> bool:
        return self._call("GET", "/_sandbox/health")["ok"]
