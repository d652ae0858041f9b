"""Refusals as JSON, in the caller's language: ``{"error": <code>, "message": <sentence>}``.

The status says what kind of refusal it is (DESIGN invariant 6): 401 no genuine initData, 403 not an
admin, 404 no such thing *for this caller* (another business's offer looks exactly like a missing
one), 409 not in a state for that, 413 a photo too large, 422 bad input (with ``field``, the form field
it is about, and ``rule``, the domain's code for what is wrong, where there is one), 502 Telegram did not
give us a photo.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from core.i18n import N_, Translator

MESSAGES = {
    "unauthorized": (401, N_("Please open the app from the bot's chat in Telegram: this request is not signed by "
                             "Telegram, or its sign-in has expired.")),
    "not_admin": (403, N_("Only admins can see this.")),
    "not_business": (403, N_("This is for businesses. Register yours in the chat with /register.")),
    "not_found": (404, N_("Not found. It may have been removed, or it is not yours.")),
    "not_orderable": (409, N_("This offer can't be ordered any more.")),
    "wrong_state": (409, N_("That can't be done to this offer now.")),
    "not_verified": (409, N_("Your business is not verified, so it can't put offers on sale.")),
    "already_reviewed": (409, N_("This business has been reviewed already.")),
    "bad_request": (422, N_("That request doesn't look right. Please reload the app and try again.")),
    "bad_location": (422, N_("That location doesn't look right: latitude -90…90, longitude -180…180.")),
    "bad_filter": (422, N_("That filter doesn't look right. Please choose your filters again.")),
    "bad_quantity": (422, N_("You can order 1 to {most} at a time.")),
    "bad_code": (422, N_("Type the customer's pickup code: letters and digits.")),
    "photo_unavailable": (502, N_("The photo can't be loaded right now. Please try again in a moment.")),
    "server_error": (500, N_("Something went wrong on our side. Please try again in a moment.")),
    # The business dashboard: an offer made or changed in the app.
    "no_photo": (422, N_("Choose a photo of the food: it becomes the deal card.")),
    "photo_gone": (422, N_("That photo was not found. Please choose it again.")),
    "payouts_not_ready": (409, N_("Set up payouts in the chat first: you can publish once Stripe has activated "
                                  "your account.")),
    "not_draft": (409, N_("This offer is published already.")),
    "photo_not_ready": (409, N_("The photo isn't ready yet: wait for the deal card, or choose another photo.")),
    "window_passed": (409, N_("The pickup window of this offer is over. Please create a new offer.")),
    "nothing_to_change": (422, N_("Change the price, the quantity or what it is, then save.")),
    "too_many_uploads": (429, N_("That is a lot of photos in one hour. Please wait a little, then try again.")),
    "bad_scan": (422, N_("That QR code is not a pickup pass. Scan the QR code in the customer's chat.")),
}

# What a business typed that the domain refuses (domain.offers.InvalidInput codes), as the app says it:
# the field is named on the page next to the message, so the message needs no "type it again".
INPUT_MESSAGES = {
    "title_short": N_("The title is too short: at least {min} characters."),
    "title_long": N_("The title is too long: at most {max} characters."),
    "description_long": N_("The description is too long: at most {max} characters."),
    "money_format": N_("Type an amount, like 4.50."),
    "money_not_positive": N_("The price must be more than zero."),
    "money_too_high": N_("That is more than {max}: please check the amount."),
    "not_a_discount": N_("The original price must be higher than the price customers pay."),
    "quantity_format": N_("Type a whole number, like 5."),
    "quantity_range": N_("The quantity must be between {min} and {max}."),
    "quantity_below_taken": N_("Sold or reserved already: {taken}. The quantity can't be less."),
    "window_format": N_("Choose when the pickup starts and ends."),
    "window_order": N_("The pickup must start before it ends, on the same day."),
    "window_long": N_("The pickup window can be at most {hours} hours long."),
    "window_past": N_("That pickup time is over, or ends in less than 15 minutes. Choose a later time."),
}

# Why a photo can't be used (domain.images.PhotoRejected reasons, and the images task's "undeliverable").
PHOTO_MESSAGES = {
    "empty_file": N_("This file is empty. Please choose a photo."),
    "too_large_file": N_("This file is too large. Please choose a photo of at most 20 MB."),
    "not_an_image": N_("This file is not an image. Please choose a photo (JPEG, PNG or WebP)."),
    "unsupported_format": N_("This image format is not supported. Please choose a JPEG, PNG or WebP photo."),
    "truncated": N_("This photo seems cut off. Please choose it again."),
    "corrupt": N_("This photo is damaged and can't be opened. Please choose another one."),
    "too_many_pixels": N_("This image has too many pixels. Please choose a smaller photo (up to 40 megapixels)."),
    "too_small": N_("This photo is too small. Please choose one at least 200 pixels on its short side."),
    "bad_aspect_ratio": N_("This photo is too long and narrow for a deal card. Please choose one closer to square."),
    "undeliverable": N_("The deal card could not be sent to your chat with the bot. Open the chat, press Start, "
                        "then choose the photo again."),
}
PHOTO_FALLBACK = N_("This photo can't be used. Please choose another one.")


class ApiError(Exception):
    """A refusal: ``code`` names it (MESSAGES, or "invalid" with an input rule, or "bad_photo" with a
    photo's reason); ``field`` is the form field it is about; ``values`` fill the sentence."""

    def __init__(self, code: str, *, field: str | None = None, rule: str | None = None, **values: object) -> None:
        super().__init__(code)
        self.code = code
        self.field = field
        self.rule = rule
        self.values = values


def photo_message(language: str, reason: str | None) -> str:
    return Translator(language)(PHOTO_MESSAGES.get(reason or "", PHOTO_FALLBACK))


def _refusal(code: str, rule: str | None) -> tuple[int, str]:
    if code == "invalid":
        return 422, INPUT_MESSAGES.get(rule or "", MESSAGES["bad_request"][1])
    if code == "bad_photo":
        return (413 if rule == "too_large_file" else 422), PHOTO_MESSAGES.get(rule or "", PHOTO_FALLBACK)
    return MESSAGES[code]


def error_response(code: str, language: str, *, field: str | None = None, rule: str | None = None,
                   **values: object) -> JSONResponse:
    status, message = _refusal(code, rule)
    body: dict[str, object] = {"error": code, "message": Translator(language)(message, **values)}
    if field is not None:
        body["field"] = field
    if rule is not None:
        body["rule"] = rule
    return JSONResponse(body, status_code=status)
