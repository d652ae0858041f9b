"""/deals filters and search: one screen of toggles (tap to choose, tap again to clear), a second
for allergens to avoid, and a search by words. What a customer chooses is remembered
(``users.deal_filters``, domain/catalog.py) and applies to every sort until changed.

Buttons: ``filt:<action>:<sort>[:<value>]``, where sort is the /deals sort to return to.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chat import menus, tags
from chat.cards import user_text
from chat.context import Context
from chat.customer import show_deals
from chat.flows import DONE, Flow, Step, ask, choice
from chat.registry import StaleButton, button, data, flow
from core.outbox import Keyboard
from core.outbox import button as key
from domain import catalog
from domain import tags as codes
from domain.catalog import PRICE_LIMITS_MINOR, Filters, Sort, When


def _mark(on: bool, label: str) -> str:
    return ("✅ " if on else "") + label


def _filters(ctx: Context) -> Filters:
    return catalog.saved_filters(ctx.session, ctx.user.id)


def _save(ctx: Context, filters: Filters) -> None:
    catalog.save_filters(ctx.session, ctx.user.id, filters)


def show_filters(ctx: Context, sort: Sort) -> None:
    _ = ctx._
    filters = _filters(ctx)
    summary = tags.filter_summary(_, filters, user_text(" ".join(filters.words)) if filters.words else None)
    lines = [_("🔎 <b>Filters</b>"), "",
             _("Tap to choose, tap again to clear. Your choice is kept for next time.")]
    lines.append(_("Now: {filters}", filters=summary) if summary else _("Now: all deals."))
    if ctx.user.latitude is None:
        lines.append(_("📍 The distance applies once you share your location (📍 Near me)."))
    s = sort.value
    categories = [key(_mark(filters.category == code, _(label)), data("filt", "cat", s, code))
                  for code, label in tags.CATEGORY_LABELS.items()]
    diets = [key(_mark(code in filters.diet, "🌱 " + _(label)), data("filt", "diet", s, code))
             for code, label in tags.DIET_LABELS.items()]
    rows: Keyboard = [categories[:3], categories[3:], diets[:4], diets[4:]]
    rows.append([key(_mark(filters.when == when, "🕒 " + _(tags.WHEN_LABELS[when.value])),
                     data("filt", "when", s, when.value)) for when in When])
    rows.append([key(_mark(filters.radius_km == km, f"{km} km"), data("filt", "km", s, km))
                 for km in catalog.DISTANCES_KM])
    rows.append([key(_mark(filters.max_price_minor == limit, "💶 " + tags.price_limit(_, limit)),
                     data("filt", "price", s, limit)) for limit in PRICE_LIMITS_MINOR])
    avoid = _("⚠️ Allergens to avoid ({count})", count=len(filters.avoid)) if filters.avoid \
        else _("⚠️ Allergens to avoid")
    rows.append([key(avoid, data("filt", "avoidmenu", s))])
    if filters.words:
        rows.append([key(_("✖️ Clear the search"), data("filt", "drop", s, "words"))])
    rows.append([key(_("🧹 Clear all"), data("filt", "reset", s)), key(_("✅ Show deals"), data("deals", s, 0))])
    rows.append([key(_("⬅️ Back"), data("deals", s, 0)), *menus.home_row(_)])
    ctx.show("\n".join(lines), rows)


def show_avoid(ctx: Context, sort: Sort) -> None:
    _ = ctx._
    filters = _filters(ctx)
    keys = [key(_mark(code in filters.avoid, _(label)), data("filt", "avoid", sort.value, code))
            for code, label in tags.ALLERGEN_LABELS.items()]
    rows: Keyboard = [keys[i:i + 3] for i in range(0, len(keys), 3)]
    rows.append([key(_("⬅️ Back"), data("filt", "show", sort.value)),
                 key(_("✅ Show deals"), data("deals", sort.value, 0))])
    ctx.show(_("⚠️ <b>Allergens to avoid</b>\n\nDeals that contain any allergen you tick are hidden. "
               "Businesses declare the allergens of each deal; ask them when in doubt."), rows)


def _number(value: str, allowed: tuple[int, ...]) -> int:
    if not value.isdigit() or int(value) not in allowed:
        raise StaleButton
    return int(value)


_MULTI = {"diet": ("diet", codes.DIETS), "avoid": ("avoid", codes.ALLERGENS)}


def _one(action: str, value: str) -> tuple[str, Any]:
    """The filter a single-choice toggle sets, and the value it chooses (StaleButton if unknown)."""
    if action == "cat" and value in codes.CATEGORIES:
        return "category", value
    if action == "when" and value in set(When):
        return "when", When(value)
    if action == "km":
        return "radius_km", _number(value, catalog.DISTANCES_KM)
    if action == "price":
        return "max_price_minor", _number(value, PRICE_LIMITS_MINOR)
    raise StaleButton


def _changed(filters: Filters, action: str, value: str) -> Filters:
    """The filters after a tap on one of the filter screens' toggles: a second tap clears."""
    if action == "reset":
        return Filters()
    if action in _MULTI:
        name, vocabulary = _MULTI[action]
        if value not in vocabulary:
            raise StaleButton
        changes: dict[str, Any] = {name: tuple(codes.toggle(getattr(filters, name), value, vocabulary))}
    else:
        name, chosen = _one(action, value)
        changes = {name: None if getattr(filters, name) == chosen else chosen}
    return replace(filters, **changes)


@button("filt")
def btn_filters(ctx: Context, args: list[str]) -> None:
    if len(args) < 2:
        raise StaleButton
    action, value = args[0], (args[2] if len(args) > 2 else "")
    try:
        sort = Sort(args[1])
    except ValueError:
        raise StaleButton from None
    if sort is Sort.NEAREST and ctx.user.latitude is None:
        sort = Sort.NEWEST
    if action == "show":
        show_filters(ctx, sort)
    elif action == "avoidmenu":
        show_avoid(ctx, sort)
    elif action == "search":
        SEARCH.start(ctx, {"sort": sort.value}, back_to=data("deals", sort.value, 0))
    elif action == "drop":
        if value not in Filters.NAMES:
            raise StaleButton
        _save(ctx, _filters(ctx).without(value))
        ctx.toast(ctx._("Filter removed: {filter}", filter=tags.filter_name(ctx._, value)))
        show_deals(ctx, sort, 0)
    else:
        _save(ctx, _changed(_filters(ctx), action, value))
        (show_avoid if action == "avoid" else show_filters)(ctx, sort)


# --------------------------------------------------------------------------- search by words


def _ask_words(ctx: Context) -> None:
    _ = ctx._
    filters = _filters(ctx)
    rows = [[choice(ctx, _("✖️ Clear the search"), "clear")]] if filters.words else None
    ask(ctx, _("🔍 What are you looking for? Type a word or two, e.g. <i>croissant</i> or <i>vegan soup</i>. "
               "We look in the titles, descriptions and business names."), rows)


def _sort_of(ctx: Context) -> Sort:
    try:
        sort = Sort(ctx.state.data.get("sort", Sort.NEWEST.value))
    except ValueError:
        sort = Sort.NEWEST
    return Sort.NEWEST if sort is Sort.NEAREST and ctx.user.latitude is None else sort


def _on_words(ctx: Context, text: str) -> str | None:
    words = catalog.search_words(text)
    if not words:
        _ask_words(ctx)
        return None
    _save(ctx, replace(_filters(ctx), words=words))
    show_deals(ctx, _sort_of(ctx), 0)
    return DONE


def _clear_words(ctx: Context, value: str) -> str | None:
    if value != "clear":
        return None
    _save(ctx, replace(_filters(ctx), words=()))
    show_deals(ctx, _sort_of(ctx), 0)
    return DONE


def _search_cancelled(ctx: Context) -> None:
    show_deals(ctx, Sort.NEWEST, 0)


SEARCH = flow(Flow("search", [Step("words", _ask_words, on_text=_on_words, on_choice=_clear_words)],
                   on_cancel=_search_cancelled, back_to="deals"))
