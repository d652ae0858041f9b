"""What the business side says about bad input and failed photos, in the user's language."""

from __future__ import annotations

from datetime import UTC, datetime

from core.i18n import Translator
from domain.offers import InvalidInput


def now() -> datetime:
    return datetime.now(UTC)


def _count(value: object) -> int:
    """A count among an error's values (the domain gives ints), for choosing a plural form."""
    return value if isinstance(value, int) else 0


def input_error(_: Translator, error: InvalidInput) -> str:
    """One clear sentence per validation rule (codes from domain.offers and domain.businesses)."""
    v = error.values
    messages = {
        "title_short": lambda: _("❗ The title is too short: please use at least {min} characters.", **v),
        "title_long": lambda: _("❗ The title is too long: please keep it under {max} characters.", **v),
        "description_long": lambda: _("❗ The description is too long: at most {max} characters, please.", **v),
        "money_format": lambda: _("❗ I couldn't read that as a price. Type an amount like <b>4.50</b>, "
                                  "<b>4,50</b> or <b>4 €</b>."),
        "money_not_positive": lambda: _("❗ The price must be more than zero."),
        "money_too_high": lambda: _("❗ That is more than {max} — surely a typo? Please type the price again.", **v),
        "not_a_discount": lambda: _("❗ The original price must be higher than the price customers pay "
                                    "(a deal is a discount). Please type the original price again."),
        "quantity_format": lambda: _("❗ Please type the number of units as a whole number, like <b>5</b>."),
        "quantity_range": lambda: _("❗ The quantity must be between {min} and {max}.", **v),
        "quantity_below_taken": lambda: _.ngettext(
            "❗ {taken} unit is already sold or reserved: the quantity can't go below that.",
            "❗ {taken} units are already sold or reserved: the quantity can't go below that.", _count(v["taken"]),
            **v),
        "window_format": lambda: _("❗ I couldn't read that time window. Type it like <b>18:00-19:30</b>."),
        "window_order": lambda: _("❗ The window must start before it ends (and end on the same day)."),
        "window_long": lambda: _("❗ The pickup window can be at most {hours} hours long.", **v),
        "window_past": lambda: _("❗ That window is over (or ends in less than 15 minutes). Please choose a later "
                                 "time."),
        "name_short": lambda: _("❗ The name is too short: at least {min} characters, please.", **v),
        "name_long": lambda: _("❗ The name is too long: at most {max} characters, please.", **v),
        "address_short": lambda: _("❗ That doesn't look like an address. Please type the street, number and town."),
        "address_long": lambda: _("❗ The address is too long: at most {max} characters, please.", **v),
        "phone_format": lambda: _("❗ That doesn't look like a phone number. Type it with digits only, for "
                                  "example <b>+49 30 1234567</b>."),
        "reason_short": lambda: _("❗ Please give a short reason (a few words): the business will see it."),
        "location_invalid": lambda: _("❗ That location is not valid. Please share it again."),
    }
    build = messages.get(error.code)
    return build() if build else _("❗ That didn't work. Please try again.")


def photo_rejection(_: Translator, reason: str) -> str:
    """Why a photo can't be used, one message per reason code of domain.images.PhotoRejected."""
    messages = {
        "not_an_image": lambda: _("This file is not an image. Please send a photo (JPEG, PNG or WebP)."),
        "unsupported_format": lambda: _("This image format is not supported. Please send a JPEG, PNG or WebP "
                                        "photo."),
        "too_many_pixels": lambda: _("This image has too many pixels. Please send a smaller photo (up to 40 "
                                     "megapixels)."),
        "too_small": lambda: _("This photo is too small. Please send one at least 200 pixels on its short side."),
        "truncated": lambda: _("This photo seems cut off (the upload was incomplete). Please send it again."),
        "too_large_file": lambda: _("This file is too large. Please send a photo of at most 20 MB."),
        "empty_file": lambda: _("This file is empty. Please send a photo."),
        "corrupt": lambda: _("This photo is damaged and can't be opened. Please send another one."),
        "bad_aspect_ratio": lambda: _("This photo is too long and narrow for a deal card. Please send one that "
                                      "is closer to square."),
    }
    build = messages.get(reason)
    return build() if build else _("This photo can't be used. Please send another one.")


def reask_invalid(ctx, flow, error: Exception) -> None:
    """How the business flows refuse an answer (their `on_refused`, with `refused_by=InvalidInput`)."""
    assert isinstance(error, InvalidInput)
    reask(ctx, flow, input_error(ctx._, error))


def reask(ctx, flow, message: str) -> None:
    """Ask the current question again with what was wrong on top, as one message (two would
    also wait on Telegram's one-message-per-second pace in a chat)."""
    before = len(ctx.outcome.replies)
    flow.current(ctx).prompt(ctx)
    asked = ctx.outcome.replies[before:]
    if asked:
        asked[-1].text = f"{message}\n\n{asked[-1].text}"
    else:
        ctx.reply(message)
