"""The photo rules of domain/photos.py on plain offers (the images task's e2e tests drive them too)."""

from __future__ import annotations

from domain import photos
from models import Offer, OfferStatus, PhotoStatus


def offer(status: OfferStatus, card: str | None = None) -> Offer:
    return Offer(status=status, photo_card_file_id=card, photo_status=PhotoStatus.PROCESSING, version=3)


def test_a_card_shown_on_a_published_offer_makes_older_buttons_stale_and_on_a_draft_not():
    published, draft = offer(OfferStatus.ACTIVE, "old"), offer(OfferStatus.DRAFT)
    for each in (published, draft):
        photos.card_shown(each, "new-card")
        assert (each.photo_card_file_id, each.photo_status, each.photo_error) == ("new-card", PhotoStatus.READY, None)
    assert (published.version, draft.version) == (4, 3)


def test_an_unusable_photo_fails_a_draft_and_leaves_a_published_offer_its_card():
    draft, published, bare = offer(OfferStatus.DRAFT), offer(OfferStatus.ACTIVE, "card"), offer(OfferStatus.ACTIVE)
    assert photos.rejected(draft, "too_small") is True
    assert (draft.photo_status, draft.photo_error) == (PhotoStatus.FAILED, "too_small")
    assert photos.rejected(published, "too_small") is False
    assert (published.photo_status, published.photo_card_file_id) == (PhotoStatus.READY, "card")
    assert photos.rejected(bare, "corrupt") is True  # published without a card: the owner must hear it


def test_an_owner_who_blocked_the_bot_fails_a_draft_only():
    draft, published = offer(OfferStatus.DRAFT), offer(OfferStatus.ACTIVE, "card")
    photos.card_undeliverable(draft)
    photos.card_undeliverable(published)
    assert (draft.photo_status, published.photo_status) == (PhotoStatus.FAILED, PhotoStatus.READY)
    assert draft.photo_error == published.photo_error == "undeliverable"
