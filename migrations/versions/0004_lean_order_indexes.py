"""lean order indexes: fewer index insertions per reservation

A reservation inserts an order row, and every index on orders takes an insertion. Three of them
did nothing for it:
* ``ix_orders_offer_id`` duplicated the leading column of ``uq_orders_offer_pickup_code``, which
  serves lookups by offer as well;
* ``uq_orders_checkout_session_id`` and ``ix_orders_payment_intent_id`` indexed the NULLs every
  new order starts with. As partial indexes over the non-NULL values they answer the same
  equality lookups (and keep checkout sessions unique) and cost a reservation nothing.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_orders_offer_id", table_name="orders")
    op.drop_constraint("uq_orders_checkout_session_id", "orders", type_="unique")
    op.create_index("uq_orders_checkout_session_id", "orders", ["checkout_session_id"], unique=True,
                    postgresql_where=sa.text("checkout_session_id IS NOT NULL"))
    op.drop_index("ix_orders_payment_intent_id", table_name="orders")
    op.create_index("ix_orders_payment_intent_id", "orders", ["payment_intent_id"],
                    postgresql_where=sa.text("payment_intent_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_orders_payment_intent_id", table_name="orders")
    op.create_index("ix_orders_payment_intent_id", "orders", ["payment_intent_id"])
    op.drop_index("uq_orders_checkout_session_id", table_name="orders")
    op.create_unique_constraint("uq_orders_checkout_session_id", "orders", ["checkout_session_id"])
    op.create_index("ix_orders_offer_id", "orders", ["offer_id"])
