"""Everything a handler needs about the update being handled."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session
from telegram import Update

from chat.replies import Outcome
from core.i18n import Translator
from core.outbox import Keyboard, Reply
from core.settings import Settings
from models import ConversationState, User


@dataclass
class Context:
    session: Session
    update: Update
    user: User
    chat_id: int
    state: ConversationState
    settings: Settings
    _: Translator
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def is_admin(self) -> bool:
        return self.user.id in self.settings.admin_ids

    @property
    def pressed_message_id(self) -> int | None:
        query = self.update.callback_query
        return query.message.message_id if query and query.message else None

    def reply(self, text: str, keyboard: Keyboard | None = None) -> None:
        self.outcome.replies.append(Reply(text=text, keyboard=keyboard))

    def show(self, text: str, keyboard: Keyboard | None = None) -> None:
        """Show a menu: edit the pressed message in place after a button press, else send one."""
        self.outcome.replies.append(Reply(text=text, keyboard=keyboard, edit_message_id=self.pressed_message_id))

    def toast(self, text: str, alert: bool = False) -> None:
        self.outcome.callback_text = text
        self.outcome.callback_alert = alert

    def leave_flow(self) -> bool:
        """Forget any half-finished step; True if there was one."""
        had_flow = self.state.flow is not None
        self.state.flow = None
        self.state.step = None
        self.state.data = {}
        return had_flow
