"""Refusals as JSON, in the caller's language: ``{"error": <code>, "message": <sentence>}``.

The status says what kind of refusal it is (DESIGN invariant 6): 401 no genuine initData, 403 not an
admin, 404 no such thing *for this caller* (another business's offer looks exactly like a missing
one), 409 not in a state for that, 422 bad input, 502 Telegram did not give us a photo.
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
}


class ApiError(Exception):
    def __init__(self, code: str, **values: object) -> None:
        super().__init__(code)
        self.code = code
        self.values = values


def error_response(code: str, language: str, **values: object) -> JSONResponse:
    status, message = MESSAGES[code]
    return JSONResponse({"error": code, "message": Translator(language)(message, **values)}, status_code=status)
