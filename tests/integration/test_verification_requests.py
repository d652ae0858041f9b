"""Which verification requests an admin never received (domain/verification_requests.py), against
real Postgres: a request Telegram refused (dropped) or never recorded counts, one sent or on its way
does not; a new application counts anew; asking again happens once."""

from __future__ import annotations

import sqlalchemy as sa

from core import db as core_db
from core import outbox
from core.outbox import Reply
from domain.verification_requests import KIND, not_received, request_key
from models import BusinessStatus, Notification, NotificationStatus
from tests.factories import make_business

ADMIN, OTHER_ADMIN = 4242, 4343
ADMINS = {ADMIN, OTHER_ADMIN}


def request(business_id: int, application: str, admin_id: int, status: NotificationStatus, *,
            again: bool = False) -> None:
    with core_db.session_scope() as session:
        note_id = outbox.record(session, request_key(business_id, application, admin_id, again=again), admin_id,
                                Reply(text="A business asks for verification", kind=KIND))
        session.execute(sa.update(Notification).where(Notification.id == note_id).values(status=status))


def waiting(admin_id: int = ADMIN) -> list[tuple[int, str]]:
    with core_db.session_scope() as session:
        return [(business.id, application) for business, application in not_received(session, admin_id, ADMINS)]


def test_only_requests_the_admin_did_not_receive_count(db):
    sent = make_business(None, "Sent", status=BusinessStatus.PENDING)
    dropped = make_business(None, "Dropped", status=BusinessStatus.PENDING)
    failed = make_business(None, "Failed, to be retried", status=BusinessStatus.PENDING)
    never = make_business(None, "Never asked", status=BusinessStatus.PENDING)
    verified = make_business(None, "Verified", status=BusinessStatus.VERIFIED)
    request(sent, "11", ADMIN, NotificationStatus.SENT)
    request(dropped, "12", ADMIN, NotificationStatus.DROPPED)
    request(dropped, "12", OTHER_ADMIN, NotificationStatus.SENT)
    request(failed, "13", ADMIN, NotificationStatus.FAILED)
    request(verified, "14", ADMIN, NotificationStatus.DROPPED)

    assert waiting() == [(dropped, "12"), (never, "0")]
    assert waiting(OTHER_ADMIN) == [(sent, "11"), (failed, "13"), (never, "0")]  # none recorded for them there

    request(dropped, "12", ADMIN, NotificationStatus.DROPPED, again=True)  # asked again, and dropped again
    request(never, "0", ADMIN, NotificationStatus.PENDING, again=True)
    assert waiting() == []


def test_a_new_application_is_asked_about_anew(db):
    business = make_business(None, "Applies twice", status=BusinessStatus.PENDING)
    request(business, "21", ADMIN, NotificationStatus.SENT)
    request(business, "21", ADMIN, NotificationStatus.SENT, again=True)
    assert waiting() == []
    request(business, "35", ADMIN, NotificationStatus.DROPPED)  # rejected, then applied again
    assert waiting() == [(business, "35")]
