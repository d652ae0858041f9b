"""Stripe API errors, shaped like the real `{"error": {...}}` bodies.

The official library picks its exception class from the HTTP status and `error.type`
(`stripe/_api_requestor.py: specific_v1_api_error`), so each helper below pins both.
"""

from __future__ import annotations

from typing import Any


class StripeApiError(Exception):
    def __init__(
        self,
        status: int,
        error_type: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message
        self.code = code
        self.param = param
        self.decline_code = decline_code

    def body(self) -> dict[str, Any]:
        # Stripe leaves out the keys that do not apply instead of sending nulls.
        error: dict[str, Any] = {"message": self.message, "type": self.error_type}
        for key in ("code", "param", "decline_code"):
            value = getattr(self, key)
            if value is not None:
                error[key] = value
        return {"error": error}


def invalid_request(message: str, *, param: str | None = None, code: str | None = None) -> StripeApiError:
    return StripeApiError(400, "invalid_request_error", message, param=param, code=code)


def missing_param(param: str) -> StripeApiError:
    return invalid_request(f"Missing required param: {param}.", param=param, code="parameter_missing")


def unknown_param(param: str) -> StripeApiError:
    return invalid_request(
        f"Received unknown parameter: {param} (the local Stripe fake does not implement it).",
        param=param,
        code="parameter_unknown",
    )


def invalid_param(param: str, message: str, *, code: str | None = None) -> StripeApiError:
    return invalid_request(message, param=param, code=code)


def no_such(object_name: str, object_id: str, *, param: str = "id") -> StripeApiError:
    return StripeApiError(
        404,
        "invalid_request_error",
        f"No such {object_name}: '{object_id}'",
        param=param,
        code="resource_missing",
    )


def unrecognized_url(method: str, path: str) -> StripeApiError:
    return StripeApiError(
        404,
        "invalid_request_error",
        f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
        "or we can help at https://support.stripe.com/.",
    )


def idempotency_mismatch(key: str) -> StripeApiError:
    return StripeApiError(
        400,
        "idempotency_error",
        "Keys for idempotent requests can only be used with the same parameters they were first "
        f"used with. Try using a key other than '{key}' if you meant to execute a different request.",
    )


# Stripe answers a bad or missing key with 401 and type invalid_request_error (not
# "authentication_error"); the library turns any 401 into stripe.AuthenticationError.
def missing_api_key() -> StripeApiError:
    return StripeApiError(
        401,
        "invalid_request_error",
        "You did not provide an API key. You need to provide your API key in the Authorization "
        "header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See "
        "https://stripe.com/docs/api#authentication for details, or we can help at "
        "https://support.stripe.com/.",
    )


def invalid_api_key(key: str) -> StripeApiError:
    masked = key[:8] + "*" * max(len(key) - 12, 0) + key[-4:] if len(key) > 12 else "*" * len(key)
    return StripeApiError(401, "invalid_request_error", f"Invalid API Key provided: {masked}")


def rate_limited() -> StripeApiError:
    return StripeApiError(
        429,
        "invalid_request_error",
        "Request rate limit exceeded. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
    )


def internal_error(message: str = "An unknown error occurred.") -> StripeApiError:
    return StripeApiError(500, "api_error", message)


CARD_DECLINE_MESSAGES = {
    "generic_decline": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "lost_card": "Your card was declined.",
    "stolen_card": "Your card was declined.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
}


def card_declined(decline_code: str) -> StripeApiError:
    # Stripe reports these declines as their own error codes.
    code = decline_code if decline_code in ("expired_card", "incorrect_cvc", "processing_error") else "card_declined"
    message = CARD_DECLINE_MESSAGES.get(decline_code, "Your card was declined.")
    return StripeApiError(402, "card_error", message, code=code, decline_code=decline_code)
