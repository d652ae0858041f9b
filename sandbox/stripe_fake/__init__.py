"""A local fake of the Stripe API for tests and development.

The official `stripe` library talks to it unchanged (`stripe.api_base = fake.url`); it serves
a hosted checkout page, signs and delivers webhooks like Stripe, and takes fault switches and
payment commands through a control API under `/_sandbox/`.
"""

from .client import PaymentDeclined, SandboxError, StripeFakeClient
from .server import StripeFake
from .webhooks import signature_header

__all__ = ["PaymentDeclined", "SandboxError", "StripeFake", "StripeFakeClient", "signature_header"]
